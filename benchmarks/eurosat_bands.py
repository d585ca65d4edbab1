"""EuroSAT (200 real Sentinel-2 tiles): all 13 bands vs the RGB bands, several seeds.

Each row is one network (``--models``) on one band set, trained supervised on the labelled
half of the tiles (50/50 split per class, all train labels: 10 per class) and tested on the
other half, once per seed (the split changes with the seed); the table gives mean, standard
deviation and every seed's accuracy, and the paired difference 13 bands - RGB per seed.

``--models`` takes ``NAME`` or ``NAME:PRETRAINED`` (``model.pretrained``), e.g.
``cnn efficientnet_lite0:imagenet``: the ImageNet-pretrained EfficientNet-Lite0 whose first
convolution the transfer path adapts to 13 bands, fine-tuned whole; ``NAME:PRETRAINED:K``
trains only its last K feature units (``model.trainable_stages``, the rest frozen);
``NAME:PRETRAINED:K:STEM`` (K may be empty) sets ``model.stem_init`` (``rgb``: the RGB filters
on B04/B03/B02 and zero on the other bands, the default; ``mean``: the mean RGB filter on every
band); such a row is run on 13 bands only, its RGB row being the one without STEM. A model
that is not registered in this installation is skipped with a note. Every run is an ordinary
run folder: re-running the script skips finished runs and resumes a stopped one.

    python benchmarks/eurosat_bands.py --data ../shared/data/eurosat_ms --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import cpu_name

RGB = ["B04", "B03", "B02"]


def model_section(spec: str) -> dict:
    """``NAME``, ``NAME:PRETRAINED`` or ``NAME:PRETRAINED:K`` (``model.trainable_stages``: the
    last K feature units train, the rest is frozen and computed once by the view bank) as a
    config's model section."""
    name, _, rest = spec.partition(":")
    pretrained, _, rest = rest.partition(":")
    stages, _, stem = rest.partition(":")
    return {"name": name, **({"pretrained": pretrained} if pretrained else {}),
            **({"trainable_stages": int(stages)} if stages else {}),
            **({"stem_init": stem} if stem else {})}


def base_spec(spec: str) -> str:
    """The spec without its STEM part (whose RGB row a STEM spec shares)."""
    parts = spec.split(":")
    return ":".join(parts[:3]).rstrip(":") if len(parts) == 4 else spec


def main() -> int:
    from aerossl.models import model_names
    from aerossl.pipelines.stages import run_stage

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/eurosat_ms"))
    p.add_argument("--models", nargs="+", default=["cnn"],
                   help="NAME, NAME:PRETRAINED or NAME:PRETRAINED:K, e.g. cnn "
                   "efficientnet_lite0:imagenet efficientnet_lite0:imagenet:3")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--context", default="other engineers' tests on the other core",
                   help="what else ran on the machine meanwhile (written to the results)")
    p.add_argument("--output-dir", type=Path, default=Path("runs/bench-eurosat"))
    p.add_argument("--result", type=Path,
                   default=Path(__file__).parent / "results" / "eurosat_bands.md")
    args = p.parse_args()

    available = set(model_names())
    band_sets = {"13 bands": None, "RGB (B04, B03, B02)": RGB}
    rows, skipped = [], []
    for spec in args.models:
        model = model_section(spec)
        if model["name"] not in available:
            skipped.append(spec)
            continue
        for band_name, bands in band_sets.items():
            if bands is not None and "stem_init" in model:
                continue  # 3 bands are not adapted: the same run as the spec without STEM
            accs = []
            for seed in args.seeds:
                tag = spec.replace(":", "-") + ("_13" if bands is None else "_rgb")
                name = f"{tag}_s{seed}"
                raw = {
                    "name": name, "output_dir": str(args.output_dir), "seed": seed,
                    "data": {"root": str(args.data), "image_size": args.image_size,
                             "labels_per_class": None, "test_fraction": 0.5, "bands": bands},
                    "model": model,
                    "algorithm": {"name": "supervised"},
                    "train": {"steps": args.steps, "batch_size": 32, "lr": 0.03,
                              "eval_every": args.steps, "num_threads": args.threads,
                              "progress": False, "tensorboard": False},
                    "report": [],
                }
                summary = run_stage(raw, args.output_dir / name, f"eurosat run {name}")
                accs.append(summary["final_acc"])
            rows.append({"model": spec, "bands": band_name, "accs": accs})

    cpu = cpu_name()
    cores = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# EuroSAT: 13 Sentinel-2 bands vs RGB",
        "",
        f"- date: {dt.date.today()}; machine: {os.cpu_count()} cores, no GPU ({cpu}); "
        f"{args.threads} thread(s) pinned to core(s) {cores} (taskset -c {cores}); "
        f"meanwhile: {args.context}; torch {torch.__version__}, Python {platform.python_version()}",
        f"- data: {args.data}: 200 real EuroSAT Sentinel-2 L1C tiles (10 classes x 20, 13 "
        f"bands, uint16); 50/50 split per class drawn by the seed (100 train, all labelled: "
        f"10 per class; 100 test); image size {args.image_size}; per-band percentile "
        "scaling (1st-99th, fitted on the train half)",
        f"- training: supervised, {args.steps} steps, batch 32, lr 0.03 (cosine), EMA 0.999, "
        "default weak augmentation (flips, 90-degree rotations, crop); model `cnn` (widths "
        "32-64-128-256) from scratch; a `NAME:PRETRAINED` model starts from those weights, its "
        "first convolution adapted to the bands (`model.stem_init`, default rgb: the RGB "
        "filters on B04/B03/B02 and zero on the other bands; `:mean`: the mean RGB filter on "
        "every band)",
        f"- seeds: {seeds}; the test half has 100 images, so one image is 1 point: read the "
        "spread",
        f"- command: `taskset -c {cores} python benchmarks/eurosat_bands.py --data {args.data} "
        f"--models {' '.join(args.models)} --seeds {seeds} --steps {args.steps} --image-size "
        f"{args.image_size}`",
        "",
        "| model | bands | mean acc | std | min | max | per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = 100 * np.array(r["accs"])
        std = a.std(ddof=1) if len(a) > 1 else 0.0
        lines.append(f"| {r['model']} | {r['bands']} | {a.mean():.1f} | {std:.1f} | "
                     f"{a.min():.1f} | {a.max():.1f} | {', '.join(f'{v:.0f}' for v in a)} |")
    lines += ["", "Paired difference, 13 bands - RGB, same seed (same split and initial "
              "weights seed):", ""]
    for spec in args.models:
        thirteen = [r for r in rows if r["model"] == spec and r["bands"] == "13 bands"]
        rgb = [r for r in rows if r["model"] == base_spec(spec) and r["bands"] != "13 bands"]
        if thirteen and rgb:
            d = 100 * (np.array(thirteen[0]["accs"]) - np.array(rgb[0]["accs"]))
            std = d.std(ddof=1) if len(d) > 1 else 0.0
            lines.append(f"- {spec}: {d.mean():+.1f} ± {std:.1f} points (per seed: "
                         f"{', '.join(f'{v:+.0f}' for v in d)})")
    if skipped:
        lines += ["", f"Not run (model not registered in this installation): "
                  f"{', '.join(skipped)}."]
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text("\n".join(lines) + "\n")
    (args.output_dir / "eurosat_bands.json").write_text(json.dumps(rows, indent=2))
    print(args.result.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
