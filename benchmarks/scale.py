"""Scale check: 100,000 images cached with bounded memory, then trained with flat memory.

1. Generates ``--images`` small JPEGs (random textures, one texture family per class) under
   ``--workdir`` (free disk is checked first; an existing set is reused).
2. Builds the decoded-image cache (chunked, written to a file) and records build time and the
   process's peak resident memory during the build (``VmHWM``, reset before the build).
3. Trains FixMatch for ``--steps`` steps through the normal engine (``Trainer.fit``) while a
   thread samples the resident memory (``VmRSS``) against the step, to show it does not grow.

Writes a Markdown report (default ``benchmarks/results/scale_100k.md``).

    python benchmarks/scale.py --workdir /tmp/aerossl-scale --steps 300
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shlex
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aerossl.data import load_or_build_cache, scan_folder
from aerossl.engine.trainer import Trainer
from aerossl.validate import config_from_dict

JPEG_BYTES = 3000  # generous size of one 64x64 JPEG of a texture, for the disk check


def memory_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_memory() -> None:
    """Reset ``VmHWM`` to the current resident size (Linux ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def texture(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    """A random texture of class ``cls``: oriented stripes of a class-specific frequency and
    colour, random phase, jitter and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.pi * cls / 7.0 + rng.normal(0, 0.15)
    freq = 2 + (cls % 5) * 2 + rng.normal(0, 0.3)
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle))
                  + rng.uniform(0, 2 * np.pi))
    colour = np.array([(cls * 53) % 256, (cls * 97) % 256, (cls * 151) % 256], np.float32)
    img = colour + 60 * wave[..., None] + rng.normal(0, 20, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def generate(root: Path, n: int, classes: int, size: int) -> float:
    """Write ``n`` JPEGs in ``classes`` folders (reused when complete); seconds taken."""
    done = root / ".complete"
    if done.is_file() and done.read_text() == f"{n} {classes} {size}":
        return 0.0
    if root.exists():
        shutil.rmtree(root)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
    for i in range(n):
        c = i % classes
        Image.fromarray(texture(rng, c, size)).save(root / f"class{c:02d}" / f"{i:06d}.jpg",
                                                    quality=90)
        if (i + 1) % 20000 == 0:
            print(f"  generated {i + 1} images", flush=True)
    done.write_text(f"{n} {classes} {size}")
    return time.perf_counter() - start


class MemorySampler(threading.Thread):
    """Samples (step, VmRSS) every ``period`` seconds while training runs."""

    def __init__(self, trainer: Trainer, period: float) -> None:
        super().__init__(daemon=True)
        self.trainer, self.period = trainer, period
        self.samples: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.period):
            self.samples.append((self.trainer.step, memory_kib("VmRSS")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default="/tmp/aerossl-scale")
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="side of the generated JPEGs")
    p.add_argument("--image-size", type=int, default=32, help="training resolution")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/scale_100k.md")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()

    cache_bytes = args.images * 3 * args.image_size**2
    need = args.images * JPEG_BYTES + cache_bytes
    free = shutil.disk_usage(work).free
    print(f"free disk under {work}: {free / 1e9:.1f} GB, need about {need / 1e9:.1f} GB")
    if free < 1.5 * need:
        sys.exit(f"not enough free disk under {work}")

    root, cache_dir = work / "images", work / "cache"
    gen_s = generate(root, args.images, args.classes, args.size)
    made = f"generated in {gen_s:.0f} s" if gen_s else "reused from an earlier run"
    print(f"images: {root} ({made})")

    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    dataset = scan_folder(root)
    rss_before = memory_kib("VmRSS")
    reset_peak_memory()
    start = time.perf_counter()
    load_or_build_cache(dataset, args.image_size, cache_dir, num_workers=args.threads)
    build_s = time.perf_counter() - start
    build_peak = memory_kib("VmHWM")
    print(f"cache built in {build_s:.0f} s; RSS {rss_before / 1024:.0f} MiB before, peak "
          f"{build_peak / 1024:.0f} MiB during, cache {cache_bytes / 2**20:.0f} MiB")

    cfg = config_from_dict({
        "name": "scale", "output_dir": str(work / "runs"), "seed": 0,
        "data": {"root": str(root), "image_size": args.image_size, "labels_per_class": 4,
                 "test_fraction": 0.02, "cache_dir": str(cache_dir)},
        "model": {"name": "cnn"},
        "algorithm": {"name": "fixmatch"},
        "train": {"steps": args.steps, "batch_size": 32, "mu": 3, "eval_every": args.steps,
                  "log_every": 25, "num_threads": args.threads, "progress": False,
                  "tensorboard": False, "device": "cpu"},
        "report": [],
    })
    if (work / "runs").exists():
        shutil.rmtree(work / "runs")
    trainer = Trainer(cfg)
    rss_ready = memory_kib("VmRSS")
    sampler = MemorySampler(trainer, period=2.0)
    sampler.start()
    start = time.perf_counter()
    result = trainer.fit()
    train_s = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    load_after = os.getloadavg()

    samples = [(s, r) for s, r in sampler.samples if 0 < s < args.steps]
    early = [r for s, r in samples if s <= args.steps // 4]
    late = [r for s, r in samples if s >= 3 * args.steps // 4]
    growth = (statistics.median(late) - statistics.median(early)) / 1024 if early and late else 0
    flat = abs(growth) <= max(20.0, 0.05 * rss_ready / 1024)
    verdict = "flat: no growth with steps" if flat else "memory GROWS with steps"
    per_step = {}
    for s, r in samples:
        per_step.setdefault(25 * (s // 25), r)
    table = "\n".join(f"| {s} | {r / 1024:.0f} |" for s, r in sorted(per_step.items()))
    command = "python " + shlex.join(sys.argv)
    text = f"""# Scale: 100,000 images

- date: {dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with
  other jobs; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}
- command: `{command}` (with `PYTHONPATH=src`)
- torch {torch.__version__}, {args.threads} thread(s), CPU

## Data

- {args.images} JPEGs of {args.size}x{args.size} random textures in {args.classes} classes
  ({made})
- cache at {args.image_size}x{args.image_size}: {cache_bytes / 2**20:.0f} MiB on disk
- cache build: **{build_s:.0f} s** ({args.images / build_s:.0f} images/s, {args.threads}
  decoding thread(s)); resident memory {rss_before / 1024:.0f} MiB before, **peak
  {build_peak / 1024:.0f} MiB** during the build: decoded pixels are appended to the file chunk by
  chunk and never held in memory; what grows with the number of images is the file list only
  (the cache itself is {cache_bytes / 2**20:.0f} MiB)

## Training

FixMatch, `cnn`, batch 32, mu 3, {args.steps} steps ({result.minutes * 60:.0f} s in the loop,
{train_s:.0f} s with the final evaluation on {len(trainer.data.split.test)} test images);
{len(trainer.data.split.labeled)} labelled and {len(trainer.data.split.unlabeled)} unlabelled
images. The uint8 cache is read into memory once ({cache_bytes / 2**20:.0f} MiB, below the 4 GiB
preload limit); resident memory after setup: {rss_ready / 1024:.0f} MiB.

Resident memory (VmRSS, sampled every 2 s) by step:

| step | RSS MiB |
|---|---|
{table}

Median RSS in the last quarter of the steps minus the median in the first quarter:
**{growth:+.1f} MiB** ({verdict}).
"""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
