"""``aerossl map`` on large synthetic scenes: tiles per second and peak memory vs scene size.

For each size a synthetic RGB scene (smooth land-cover-like patches plus noise, uint8) is
written to disk as a zlib-compressed tiled GeoTIFF (256 px file tiles, UTM georeferencing),
itself tile by tile so that the writer never holds the scene. Each scene is then mapped in a
fresh process (``--one``): tiles of ``--tile-size`` px (UC Merced's 256 by default) classified
by a run's model; the process reports its wall time, tiles/s and peak resident memory
(``VmHWM``), next to its resident memory just before the map (torch and the model loaded).
Memory must be flat in the scene's size: the scene is read by windows, one batch ahead.

Without ``--run`` a small supervised run is trained on the embedded demo first (cnn at 32 px,
60 steps): the benchmark measures the streaming, not the accuracy.

    PYTHONPATH=src python benchmarks/map_streaming.py --sizes 8000 20000 \
        --out benchmarks/results/map_streaming.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command as report_command
from report import machine


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    """Current resident memory of this process (MiB)."""
    return _status_mib("VmRSS")


def peak_mib() -> float:
    """Peak resident memory of this process (MiB): ``VmHWM`` (``ru_maxrss`` would carry the
    parent's peak over the fork)."""
    return _status_mib("VmHWM")


def write_scene(path: Path, size: int, seed: int = 0, tile: int = 256) -> None:
    """A ``size x size`` RGB tiled GeoTIFF of smooth patches plus noise (deflate, 256 px
    tiles, UTM 0.3 m/px), written window by window with rasterio."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 230, (12, 3))
    patch = 700  # px, size of the land-cover patches
    grid = rng.integers(0, len(palette), (size // patch + 2, size // patch + 2))
    yy, xx = np.mgrid[0:tile, 0:tile]
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32611", "transform": from_origin(710000.0, 4130000.0, 0.3, 0.3),
               "tiled": True, "blockxsize": tile, "blockysize": tile, "compress": "deflate",
               "photometric": "RGB", "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for ty in range(0, size, tile):
            for tx in range(0, size, tile):
                cls = grid[(ty + yy) // patch, (tx + xx) // patch]
                texture = 20 * np.sin((xx + tx) / (3 + cls)) * np.cos((yy + ty) / (5 + cls))
                noise = rng.integers(-12, 13, (tile, tile, 1))
                block = np.clip(palette[cls] + texture[..., None] + noise, 0, 255)
                h, w = min(tile, size - ty), min(tile, size - tx)
                dst.write(block.astype(np.uint8)[:h, :w].transpose(2, 0, 1),
                          window=Window(tx, ty, w, h))


def train_demo_run(out: Path) -> Path:
    """A small supervised run on the embedded demo (the model whose speed is measured)."""
    import aerossl

    cfg = {"name": "map_bench", "output_dir": str(out), "seed": 0,
           "data": {"root": "demo", "image_size": 32, "labels_per_class": 4},
           "model": {"name": "cnn"}, "algorithm": {"name": "supervised"},
           "train": {"steps": 60, "batch_size": 32, "eval_every": 60, "progress": False,
                     "tensorboard": False}, "report": []}
    return aerossl.train(cfg).run_dir


def map_one(run: Path, scene: Path, tile_size: int, batch_size: int) -> dict:
    """Map one scene in this process; what it measured."""
    import torch

    from aerossl.runs.loader import load_run_network
    from aerossl.runs.mapping import map_scene

    load_run_network(run)  # imports and first model load, as the map's own
    torch.set_num_threads(1)
    before = rss_mib()
    start = time.perf_counter()
    cpu = time.process_time()
    res = map_scene(run, scene, scene.with_name(scene.stem + "_map"), tile_size=tile_size,
                    batch_size=batch_size, progress=False, device="cpu")
    wall = time.perf_counter() - start
    rows, cols = res.rows * res.tile_size[0], res.cols * res.tile_size[1]
    return {"tiles_cover_px": f"{rows} x {cols}",
            "tiles": res.num_tiles, "classified": res.num_classified, "wall_s": round(wall, 1),
            "cpu_s": round(time.process_time() - cpu, 1),
            "tiles_per_s": round(res.num_tiles / wall, 1),
            "tiles_per_cpu_s": round(res.num_tiles / max(time.process_time() - cpu, 1e-9), 1),
            "rss_before_mib": round(before),
            "peak_rss_mib": round(peak_mib()), "file_mib": round(scene.stat().st_size / 2**20)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8000, 20000])
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--run", default=None, help="run folder (default: train a demo run)")
    p.add_argument("--workdir", default=None, help="where the scenes go (default: a temp dir)")
    p.add_argument("--out", default=None, help="Markdown results file")
    p.add_argument("--keep", action="store_true", help="keep the scenes in --workdir")
    p.add_argument("--baseline", default=None,
                   help="an earlier results file whose table is kept below, for comparison")
    p.add_argument("--context", default="other engineers' tests on the other core",
                   help="what else ran on the machine meanwhile (written to the results)")
    p.add_argument("--one", nargs=2, metavar=("RUN", "SCENE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(map_one(Path(args.one[0]), Path(args.one[1]), args.tile_size,
                                 args.batch_size)))
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="map_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    run = Path(args.run) if args.run else train_demo_run(work / "runs")
    load_before = os.getloadavg()
    rows = []
    for size in args.sizes:
        scene = work / f"scene_{size}.tif"
        t = time.perf_counter()
        if not scene.exists():
            write_scene(scene, size)
        print(f"scene {size} px written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        cmd = [sys.executable, __file__, "--one", str(run), str(scene), "--tile-size",
               str(args.tile_size), "--batch-size", str(args.batch_size)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = {"size": size, **json.loads(out.strip().splitlines()[-1])}
        print(row, file=sys.stderr)
        rows.append(row)
        if not args.keep:
            scene.unlink()
    load_after = os.getloadavg()
    cols = ["size", "tiles_cover_px", "file_mib", "tiles", "wall_s", "cpu_s", "tiles_per_s",
            "tiles_per_cpu_s",
            "rss_before_mib", "peak_rss_mib"]
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    cores = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    baseline = []
    if args.baseline:
        old = Path(args.baseline).read_text().splitlines()
        keep = [line for line in old if line.startswith(("- date", "- command", "- machine"))]
        keep += ["", *(line for line in old if line.startswith("|"))]
        baseline = ["## Earlier measurement, for comparison", "",
                    f"From `{args.baseline}`:", "", *keep, ""]
    command = "PYTHONPATH=src " + report_command("map_streaming.py")
    text = "\n".join([
        "# `aerossl map`: streaming a large scene",
        "",
        "Written by `benchmarks/map_streaming.py` (see its docstring). Synthetic RGB scenes as",
        "deflate-compressed tiled GeoTIFFs (256 px file tiles) on disk; each mapped in a fresh",
        f"process with tiles of {args.tile_size} px (stride {args.tile_size}), batch "
        f"{args.batch_size}, a small cnn at 32 px (demo run), torch threads 1, CPU.",
        "`size`: the scene is size x size px; `tiles_cover_px`: what the tiles cover (the last",
        "row and column stick out and are skipped as no-data when mostly outside).",
        "`rss_before_mib`: resident memory with torch and the model loaded, just before the map;",
        "`peak_rss_mib`: peak resident memory of the whole process (`VmHWM`).",
        "`tiles_per_s` is by wall time on a core shared with other jobs; `tiles_per_cpu_s` by",
        "the process's CPU time (the speed on an idle core).",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- machine: {machine()}, "
        f"pinned to core(s) {cores} (`taskset -c {cores}`); load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f}; meanwhile: {args.context}",
        "",
        *table,
        "",
        *baseline,
    ])
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
