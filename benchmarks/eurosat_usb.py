"""EuroSAT RGB on USB's protocol, with USB's published rows beside aerossl's.

The data: EuroSAT RGB (27,000 64x64 JPEGs, 10 classes, MIT; Helber et al. 2019), class folders
as in its ``2750`` folder. USB's split (semilearn's EuroSAT set): per class, the files in sorted
order (Python's ``sorted`` of the names), the first 80 % the training pool (the labelled draws
and the unlabelled set) and the last 20 % the test set (5,400 images); 20 and 40 labels are 2
and 4 per class. This script writes that split as split files (``pool.txt``, ``test.txt``) and
trains every ``--configs`` x ``--labels`` x ``--seeds`` cell as its own ``aerossl train``
process, with ``data.train_pool_file`` / ``data.test_names_file``: per seed the labelled images
are drawn from the pool per class (``data.split_seed`` = seed), the same labels in every row of
a seed, and the unlabelled set is the whole pool (labelled images included), as in USB.

aerossl reports the test accuracy of the final EMA weights. USB's table
(``results/usb_cv.csv`` of microsoft/Semi-supervised-learning, commit 3314042, stored as error
rates; ViT-S with 2-px patches, ``vit_small_patch2_32``, pretrained on ImageNet-1k at 32 px;
204,800 iterations of 8 labelled + 8 unlabelled images, AdamW, 3 seeds, per its
``config/usb_cv/*/*_eurosat_*.yaml``) reports the best test accuracy seen during training,
which favours it: the two are printed side by side, marked, with both budgets.

    python benchmarks/eurosat_usb.py --data /path/to/EuroSAT/2750 --labels 2 4 --seeds 0 1 2 \
        --configs ucmerced_pretrained_supervised few_labels \
        --out benchmarks/results/eurosat_usb.md

Each row also gives the lowest per-class test accuracy over the cell's seeds (the class whose
pseudo-labels a neighbour absorbed shows there, not in the mean) and the wall minutes per run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from aerossl.pipelines.sweep import lowest_class

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, cpu_name

#: USB's published EuroSAT error rates (mean±std over 3 seeds, %), ``results/usb_cv.csv`` of
#: microsoft/Semi-supervised-learning at commit 3314042: (20 labels, 40 labels).
USB_EUROSAT_ERROR = {
    "supervised": ("26.49±1.6", "16.12±1.35"), "pseudolabel": ("25.46±1.36", "15.7±2.12"),
    "meanteacher": ("26.83±1.46", "15.85±1.66"), "pimodel": ("21.82±1.22", "12.09±2.27"),
    "vat": ("26.16±0.96", "10.09±0.94"), "mixmatch": ("24.85±4.85", "17.28±2.67"),
    "remixmatch": ("5.05±1.05", "5.07±0.56"), "adamatch": ("7.02±0.79", "4.75±1.1"),
    "uda": ("9.83±2.15", "6.22±1.36"), "fixmatch": ("13.44±3.53", "5.91±2.02"),
    "flexmatch": ("5.17±0.57", "5.58±0.81"), "dash": ("11.19±0.9", "6.96±0.87"),
    "crmatch": ("13.24±1.69", "8.35±1.71"), "comatch": ("5.75±0.43", "4.81±1.05"),
    "simmatch": ("7.66±0.6", "5.27±0.89"), "freematch": ("6.5±0.78", "5.78±0.51"),
    "softmatch": ("5.75±0.62", "5.9±1.42"), "defixmatch": ("14.71±6.52", "3.72±0.79"),
}


def write_split(data: Path, out: Path, train_fraction: float = 0.8) -> tuple[Path, Path]:
    """USB's split as two split files under ``out``: per class, sorted names, the first
    ``train_fraction`` the pool, the rest the test set."""
    out.mkdir(parents=True, exist_ok=True)
    pool, test = [], []
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    if len(classes) != 10:
        raise SystemExit(f"{data}: expected EuroSAT's 10 class folders, found {classes}")
    for cls in classes:
        names = sorted(p.name for p in (data / cls).iterdir() if p.suffix.lower() == ".jpg")
        cut = int(train_fraction * len(names))  # integral for every EuroSAT class
        pool += [f"{cls}/{n}" for n in names[:cut]]
        test += [f"{cls}/{n}" for n in names[cut:]]
    (out / "pool.txt").write_text("\n".join(pool) + "\n")
    (out / "test.txt").write_text("\n".join(test) + "\n")
    return out / "pool.txt", out / "test.txt"


def run_cell(args: argparse.Namespace, config: str, labels: int, seed: int,
             pool: Path, test: Path) -> dict:
    """One ``aerossl train`` process (skipped when its summary exists, resumed when stopped)."""
    name = f"{config}-l{labels}-s{seed}"
    run_dir = Path(args.output_dir) / name
    if not (run_dir / "summary.json").is_file():
        cmd = [sys.executable, "-m", "aerossl.cli", "train", config, f"data.root={args.data}",
               f"data.train_pool_file={pool}", f"data.test_names_file={test}",
               f"data.labels_per_class={labels}", f"seed={seed}", f"data.split_seed={seed}",
               f"name={name}", f"output_dir={args.output_dir}", "train.progress=false",
               *args.overrides]
        if (run_dir / "checkpoints" / "last.pt").is_file():
            cmd = [sys.executable, "-m", "aerossl.cli", "train", "--resume", str(run_dir),
                   "train.progress=false"]
        if args.cpus:
            cmd = ["taskset", "-c", args.cpus, *cmd]
        log = Path(args.output_dir) / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log, "w") as f:
            subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, **({"AEROSSL_CACHE_DIR": args.cache_dir}
                                                 if args.cache_dir else {})})
        (run_dir / "wall_minutes.txt").write_text(f"{(time.perf_counter() - t0) / 60:.3f}")
    summary = json.loads((run_dir / "summary.json").read_text())
    wall = run_dir / "wall_minutes.txt"
    row = {"config": config, "labels": labels * 10, "seed": seed, "acc": summary["final_acc"],
           "min_class_acc": lowest_class(run_dir), "steps": summary["steps"],
           "minutes": float(wall.read_text()) if wall.is_file() else summary["minutes"],
           "bank_minutes": summary.get("bank_minutes", 0.0), "threads": summary.get("threads")}
    print(f"{name}: {row['acc']:.4f} (lowest class {row['min_class_acc']:.3f}, "
          f"{row['minutes']:.1f} min)", flush=True)
    return row


def write_table(rows: list[dict], args: argparse.Namespace) -> None:
    """The Markdown table (aerossl's cells, then USB's published rows) and the rows as JSON."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    budgets = sorted({r["labels"] for r in rows})
    lines = [
        "# EuroSAT RGB on USB's protocol", "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {cpu_name()}, "
        "no GPU; one run at a time" + (f" on CPUs {args.cpus}" if args.cpus else "") + ".",
        f"- Command: `{command('eurosat_usb.py')}`",
        f"- Other load on the machine: {args.other_load}",
        "- Data: EuroSAT RGB, 27,000 64x64 JPEGs, 10 classes; USB's split (per class, sorted "
        "names, first 80 % pool, last 20 % test: 21,600 / 5,400); labelled images drawn per "
        "class from the pool by the seed, the same in every row of a seed; unlabelled = the "
        "whole pool.",
        "- aerossl: test accuracy of the **final EMA weights**; `lowest class`: the lowest "
        "per-class test accuracy over the cell's seeds; minutes: wall time of one run as run "
        "(image cache and view bank included when they were cold; `bank` is that part).",
        "- USB rows: **theirs**, from `results/usb_cv.csv` (microsoft/Semi-supervised-learning "
        "@3314042, error rates turned into accuracy): ViT-S/2 (`vit_small_patch2_32`) "
        "ImageNet-1k-pretrained at 32 px, **204,800 iterations** of 8 labelled + 8 unlabelled "
        "images (their `config/usb_cv/*/*_eurosat_*.yaml`), 3 seeds, **best test accuracy seen "
        "during training**. aerossl's budget is each config's `train.steps` (600 unless "
        "overridden) of 32 labelled + 96 unlabelled images.", "",
        "| method | " + " | ".join(f"{b} labels: accuracy (mean ± std) | per seed | lowest "
                                  "class | minutes (bank)" for b in budgets) + " |",
        "|---|" + "---|---|---|---|" * len(budgets),
    ]
    for config in dict.fromkeys(r["config"] for r in rows):
        cells = []
        for b in budgets:
            sel = [r for r in rows if r["config"] == config and r["labels"] == b]
            if not sel:
                cells.append("| | | ")
                continue
            acc = np.array([r["acc"] for r in sel]) * 100
            std = acc.std(ddof=1) if len(acc) > 1 else 0.0
            cells.append(f"{acc.mean():.1f} ± {std:.1f} | {', '.join(f'{a:.1f}' for a in acc)}"
                         f" | {100 * min(r['min_class_acc'] for r in sel):.1f} | "
                         f"{np.mean([r['minutes'] for r in sel]):.1f} "
                         f"({max(r['bank_minutes'] for r in sel):.1f})")
        lines.append(f"| aerossl `{config}` | " + " | ".join(cells) + " |")
    for method, errors in USB_EUROSAT_ERROR.items():
        cells = []
        for b in budgets:
            if b not in (20, 40):
                cells.append("| | | ")
                continue
            mean, std = errors[0 if b == 20 else 1].split("±")
            cells.append(f"{100 - float(mean):.1f} ± {float(std):.1f} | | | ")
        lines.append(f"| USB {method} (theirs, best-of-training) | " + " | ".join(cells) + " |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    """Parse arguments, write the split, run every cell, write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="EuroSAT RGB class folders (2750)")
    p.add_argument("--labels", type=int, nargs="+", default=[2, 4], help="labels per class")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", required=True, help="configs, one row each")
    p.add_argument("--output-dir", default="runs/bench-eurosat")
    p.add_argument("--cache-dir", default=None, help="AEROSSL_CACHE_DIR of the runs")
    p.add_argument("--cpus", default=None, help="taskset CPU list of the runs, e.g. 0-1")
    p.add_argument("--out", default="benchmarks/results/eurosat_usb.md")
    p.add_argument("--other-load", default="not stated")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every run")
    args = p.parse_args()
    pool, test = write_split(args.data.resolve(), Path(args.output_dir) / "split")
    rows = [run_cell(args, config, labels, seed, pool, test)
            for labels in args.labels for config in args.configs for seed in args.seeds]
    write_table(rows, args)


if __name__ == "__main__":
    main()
