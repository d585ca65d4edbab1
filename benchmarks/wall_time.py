"""Wall time of a whole run from a cold start: the command a user types, to the final accuracy.

Each run is ``aerossl train CONFIG data.root=ROOT seed=S [overrides]`` in a fresh process with
an empty image cache and view-bank folder (``AEROSSL_CACHE_DIR`` set to a new temporary
folder), so decoding the images, building the view bank and every training step and evaluation
are counted. The table gives the wall time, its view-bank part, the final accuracy (final EMA
weights, not the best evaluation) and the thread count, per seed and as mean ± std.

    python benchmarks/wall_time.py ucmerced_pretrained_fixmatch --root ../shared/data/ucmerced \
        --seeds 0 1 2 --out benchmarks/results/wall_time.md

``--grow-to N`` first writes a larger set of N images from ``--root``'s class folders: every
image repeated as random crops (60-100 % of each side, resized back to the image's size, JPEG
quality 90), the originals included; the run then trains on that set (its test half holds
crops of the training images' scenes too, so its accuracy is not a held-out number: the row is
for the time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, machine


def grow(root: Path, n: int, out: Path, seed: int = 0) -> Path:
    """A class-folder set of ``n`` images: ``root``'s images and random crops of them."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files = sorted(f for f in root.glob("*/*") if f.suffix.lower() in {".jpg", ".png", ".tif"})
    for i in range(n):
        src = files[i % len(files)]
        (out / src.parent.name).mkdir(parents=True, exist_ok=True)
        image = Image.open(src).convert("RGB")
        if i >= len(files):
            w, h = image.size
            cw, ch = (int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0)))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            image = image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)
        image.save(out / src.parent.name / f"{i:06d}_{src.stem}.jpg", quality=90)
    return out


def run_once(config: str, root: Path, seed: int, overrides: list[str], work: Path) -> dict:
    cache = work / f"cache-{seed}"
    out = work / f"runs-{seed}"
    env = {**os.environ, "AEROSSL_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "aerossl.cli", "train", config, f"data.root={root}",
           f"seed={seed}", f"output_dir={out}", "train.progress=false", *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-4000:])
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    return {"seed": seed, "minutes": wall / 60, "acc": 100 * summary["final_acc"],
            "images": summary["num_labeled"] + summary["num_unlabeled"] + summary["num_test"],
            "bank_minutes": summary["bank_minutes"], "threads": summary.get("threads")}


def sd(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if len(a) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="dotted config overrides")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--grow-to", type=int, default=None, help="train on N images (see above)")
    p.add_argument("--context", default="nothing else ran", help="what else ran meanwhile")
    p.add_argument("--out", type=Path, default=None, help="Markdown file (a section appended)")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder (caches, banks, runs: GBs) instead of deleting it")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wall_time_"))
    root = args.root.resolve()
    if args.grow_to:
        root = grow(root, args.grow_to, work / "data")
    rows = []
    for seed in args.seeds:
        rows.append(run_once(args.config, root, seed, args.overrides, work))
        print(rows[-1], file=sys.stderr)
    mins = np.array([r["minutes"] for r in rows])
    accs = np.array([r["acc"] for r in rows])
    lines = [
        f"## `{args.config}` {' '.join(args.overrides)}"
        + (f" on {args.grow_to:,} images (grown)" if args.grow_to else ""),
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()}, "
        "cold image cache and view bank per run",
        f"- command: `{command('wall_time.py')}`",
        f"- meanwhile: {args.context}",
        "",
        "| seed | images | threads | wall minutes | of which view bank | final accuracy |",
        "|---|---|---|---|---|---|",
        *(f"| {r['seed']} | {r['images']} | {r['threads']} | {r['minutes']:.1f} | "
          f"{r['bank_minutes']:.1f} | {r['acc']:.1f} |" for r in rows),
        f"| mean ± std | | | {mins.mean():.1f} ± {sd(mins):.1f} | | "
        f"{accs.mean():.1f} ± {sd(accs):.1f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        head = "" if args.out.exists() else (
            "# Cold-start wall time of whole runs\n\nWritten by `benchmarks/wall_time.py` "
            "(see its docstring): from the command to the final accuracy, image decoding and "
            "view bank included.\n\n")
        with args.out.open("a") as f:
            f.write(head + text + "\n")
    if args.keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
