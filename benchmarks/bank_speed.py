"""The view bank's frozen units: views per second per backend, thread count and process count.

Three measurements on the same UC Merced images, EfficientNet-Lite0 (ImageNet) at 224 px with
its first 6 of 9 feature units frozen (``ucmerced_pretrained_fixmatch``'s cut):

1. **Frozen units alone** (``--images`` images, batches of 64, best of ``--repeats``), per
   backend: PyTorch eager (contiguous, and channels-last), TorchScript frozen
   (``torch.jit.freeze``: batch norm folded into the convolutions), ``torch.compile``
   (inductor, compile time excluded) and ONNX Runtime; at 1 and 2 threads. Each backend's
   largest difference from eager is given next to its speed.
2. **A whole bank build** (``ViewBank.fill`` through ``Trainer``: per-image augmentation, the
   frozen units, float16 memory-mapped storage) of ``--per-class`` images per class, cold bank,
   per shipped backend (``bank.backend``: torch, onnxruntime) at 1 and 2 threads.
3. The same build under ``torchrun --nproc_per_node 2`` (one thread per process).

    python benchmarks/bank_speed.py --root ../shared/data/ucmerced \
        --out benchmarks/results/bank_speed.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import results_header, write_results

ENTRY = 6  # ucmerced_pretrained_fixmatch: trainable_stages 3 of Lite0's 9 units


def load_images(root: Path, n: int) -> torch.Tensor:
    """``n`` images spread over the classes, resized to 224 px, as floats in [0, 1]."""
    from PIL import Image

    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".tif", ".png"})
    files = files[:: max(1, len(files) // n)][:n]
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BICUBIC))
              for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)


def lite0():
    from aerossl.models import create_model
    from aerossl.models.normalize import Normalized
    from aerossl.models.pretrained import load_pretrained, pretrained_source

    net = create_model("efficientnet_lite0", 21)
    load_pretrained(net, "efficientnet_lite0", "imagenet")
    src = pretrained_source("efficientnet_lite0", "imagenet")
    mean = [float(m) for m in torch.as_tensor(src.mean).flatten().expand(3)]
    std = [float(s) for s in torch.as_tensor(src.std).flatten().expand(3)]
    return Normalized(net, mean, std).eval()


class Bottom(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.forward_bottom(x, ENTRY)


def backends(x: torch.Tensor) -> dict:
    """name -> (function of a batch, note); built lazily in ``units``."""
    def eager():
        net = lite0()
        return lambda v: net.forward_bottom(v, ENTRY), ""

    def channels_last():
        net = lite0().to(memory_format=torch.channels_last)
        return (lambda v: net.forward_bottom(v.contiguous(memory_format=torch.channels_last),
                                             ENTRY)), ""

    def jit_freeze():
        with torch.no_grad():
            frozen = torch.jit.freeze(torch.jit.trace(Bottom(lite0()).eval(), x[:8]))
        return frozen, ""

    def compiled():
        fn = torch.compile(Bottom(lite0()).eval())
        t = time.perf_counter()
        with torch.no_grad():
            fn(x[:64])
        return fn, f"compile {time.perf_counter() - t:.0f} s"

    def onnxruntime():
        from aerossl.engine.bottom import backend_name, frozen_bottom

        name = backend_name("onnxruntime", torch.device("cpu"))
        return frozen_bottom(lite0(), ENTRY, name, x[:1]), name

    return {"eager": eager, "channels-last": channels_last, "torchscript-frozen": jit_freeze,
            "torch.compile": compiled, "onnxruntime": onnxruntime}


def units(x: torch.Tensor, threads: list[int], repeats: int, only: list[str] | None) -> list:
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        reference = None
        for name, make in backends(x).items():
            if only and name not in only:
                continue
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                fn, note = make()
            best = float("inf")
            with torch.no_grad():
                fn(x[:64])
                for _ in range(repeats):
                    start = time.perf_counter()
                    out = torch.cat([fn(x[i:i + 64]) for i in range(0, len(x), 64)])
                    best = min(best, time.perf_counter() - start)
            if reference is None:
                reference = out
            diff = float((out - reference).abs().max() / reference.abs().max())
            rows.append({"backend": name, "threads": t, "views_s": len(x) / best,
                         "rel_diff": diff, "note": note})
            print(rows[-1], file=sys.stderr)
    return rows


def subset(root: Path, per_class: int, out: Path) -> Path:
    """A dataset folder of symlinks to the first ``per_class`` images of every class."""
    for cls in sorted(d for d in root.iterdir() if d.is_dir()):
        (out / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[:per_class]:
            link = out / cls.name / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    return out


def bank_config(root: Path, work: Path, backend: str, threads: int | None, tag: str) -> dict:
    return {"name": tag, "output_dir": str(work / "runs"), "seed": 0,
            "data": {"root": str(root), "image_size": 224, "test_fraction": 0.5,
                     "labels_per_class": 1, "cache_dir": str(work / "cache")},
            "model": {"name": "efficientnet_lite0", "pretrained": "imagenet",
                      "trainable_stages": 3},
            "algorithm": {"name": "fixmatch"},
            "bank": {"views": 2, "backend": backend, "dir": str(work / "banks" / tag)},
            "train": {"steps": 1, "batch_size": 32, "mu": 3, "num_threads": threads,
                      "progress": False, "tensorboard": False, "device": "cpu"},
            "report": []}


DRIVER = """
import json, sys
from aerossl.validate import config_from_dict
from aerossl.engine import distributed
from aerossl.engine.trainer import Trainer
trainer = Trainer(config_from_dict(json.loads(sys.argv[1])))
s = trainer.data.split
views = len(trainer.data.labels) + 2 * 2 * len(set(s.labeled) | set(s.unlabeled))
if distributed.rank() == 0:
    print("RESULT", json.dumps({"views": views, "seconds": trainer.bank_seconds}))
distributed.shutdown()
"""


def bank_build(cfg: dict, processes: int, work: Path) -> dict:
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(processes)] if processes > 1 else [sys.executable])
    out = subprocess.run([*cmd, str(driver), json.dumps(cfg)], env=env, capture_output=True,
                         text=True, check=False)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-4000:])
    result = json.loads(line[-1][len("RESULT "):])
    return {**result, "views_s": result["views"] / result["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="UC Merced class folders")
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--per-class", type=int, default=8, help="images per class of the bank build")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", nargs="+", default=None, help="only these (part 1)")
    p.add_argument("--context", default="nothing else (the machine was otherwise idle)",
                   help="what else ran on the machine meanwhile")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    load = os.getloadavg()[0]
    x = load_images(args.root, args.images)
    unit_rows = units(x, args.threads, args.repeats, args.backends)

    work = Path(tempfile.mkdtemp(prefix="bank_speed_"))
    root = subset(args.root, args.per_class, work / "data")
    builds = []
    for backend in ("torch", "onnxruntime"):
        for t in args.threads:
            tag = f"{backend}-{t}"
            r = bank_build(bank_config(root, work, backend, t, tag), 1, work)
            builds.append({"backend": backend, "processes": 1, "threads": t, **r})
            print(builds[-1], file=sys.stderr)
    r = bank_build(bank_config(root, work, "onnxruntime", None, "ddp"), 2, work)
    builds.append({"backend": "onnxruntime", "processes": 2, "threads": 1, **r})
    print(builds[-1], file=sys.stderr)

    eager = {r["threads"]: r["views_s"] for r in unit_rows if r["backend"] == "eager"}
    lines = [
        *results_header(
            "View bank: frozen-unit throughput per backend, threads and processes",
            "bank_speed.py", meanwhile=args.context, load=load,
            about="EfficientNet-Lite0 (ImageNet) at 224 px, its first 6 of 9 feature units (the "
            "cut of `ucmerced_pretrained_fixmatch`), float32 inputs, batches of 64.",
            software=f"torch {torch.__version__}, Python {platform.python_version()}"),
        f"## 1. Frozen units alone ({len(x)} UC Merced images, best of {args.repeats})",
        "",
        "| backend | threads | views/s | views/s per thread | x eager (same threads) | "
        "max diff from eager (relative) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in unit_rows:
        ratio = r["views_s"] / eager[r["threads"]] if r["threads"] in eager else float("nan")
        lines.append(f"| {r['backend']} | {r['threads']} | {r['views_s']:.1f} | "
                     f"{r['views_s'] / r['threads']:.1f} | {ratio:.2f} | {r['rel_diff']:.1e} | "
                     f"{r['note']} |")
    lines += [
        "",
        f"## 2-3. Whole bank builds ({args.per_class} images per class, 2 weak + 2 strong draws "
        "of each training image and the plain view of every image; cold bank)",
        "",
        "| bank.backend | processes | threads each | views | seconds | views/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in builds:
        lines.append(f"| {r['backend']} | {r['processes']} | {r['threads']} | {r['views']} | "
                     f"{r['seconds']:.1f} | {r['views_s']:.1f} |")
    write_results(args.out, "\n".join(lines) + "\n")
    shutil.rmtree(work)  # the subset, its caches and banks


if __name__ == "__main__":
    main()
