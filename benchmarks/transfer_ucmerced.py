"""Transfer learning across UC Merced classes: pre-train on 11 classes, transfer to the other 10.

Source: the 11 classes of even index (alphabetical), trained (a) supervised on all labels of
their train half and (b) with SimCLR on all their images (no labels). Target: the other 10
classes with 4 labels per class (50/50 split). On the target the same network is trained from
scratch, fully fine-tuned from each source (backbone at 0.1x the head's learning rate), and
linearly probed (frozen backbone). One pipeline (``aerossl.run_pipeline``): re-running the
script skips finished runs and resumes a stopped one. Writes
``benchmarks/results/transfer_ucmerced.md``.

    python benchmarks/transfer_ucmerced.py --data /work/shared/data/ucmerced
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

import torch

import aerossl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import cpu_name


def subsets(data: Path, out: Path) -> tuple[Path, Path, list[str], list[str]]:
    """Folders of symlinks to the source (even index) and target (odd index) classes."""
    classes = sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    source, target = classes[0::2], classes[1::2]
    for name, chosen in (("source", source), ("target", target)):
        for c in chosen:
            link = out / name / c
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((data / c).resolve(), target_is_directory=True)
    return out / "source", out / "target", source, target


def probes(run_dir: Path, scratch: Path) -> tuple[float, float]:
    """Linear probes (default settings) of ``run_dir``'s final encoder and of the same encoder
    at its random initialisation (same seed), on the run's labelled and test images."""
    from aerossl.algorithms.simclr import linear_probe
    from aerossl.engine.trainer import Trainer
    from aerossl.runs.loader import load_run_config, load_run_network

    cfg = load_run_config(run_dir)
    untrained = Trainer(cfg.model_copy(update={"output_dir": str(scratch)}))
    data = untrained.run_data()
    trained, _ = load_run_network(run_dir)
    return linear_probe(trained, data), linear_probe(untrained.eval_network(), data)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/ucmerced"))
    p.add_argument("--output-dir", default="runs/bench-transfer")
    p.add_argument("--source-steps", type=int, default=1000)
    p.add_argument("--simclr-steps", type=int, default=800)
    p.add_argument("--target-steps", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--result", type=Path,
                   default=Path(__file__).parent / "results" / "transfer_ucmerced.md")
    p.add_argument("--lwf", action="store_true",
                   help="forgetting instead: old-task (source) and new-task (target) accuracy "
                   "of Learning without Forgetting, plain fine-tuning and a frozen backbone; "
                   "writes results/transfer_ucmerced_lwf.md")
    args = p.parse_args()
    out = Path(args.output_dir)
    source, target, source_classes, target_classes = subsets(args.data, out / "data")
    if args.lwf:
        return forgetting(args, out, source, target, source_classes, target_classes)

    base = {"seed": args.seed,
            "data": {"root": str(target), "image_size": 32, "labels_per_class": 4},
            "model": {"name": "cnn"},
            "algorithm": {"name": "supervised"},
            "train": {"steps": args.target_steps, "batch_size": 32, "lr": 0.03,
                      "eval_every": 500, "num_threads": 1, "progress": False,
                      "tensorboard": False},
            "report": []}
    src = {"data": {"root": str(source), "labels_per_class": None}}
    stages = [
        {"name": "source_supervised", **src, "train": {"steps": args.source_steps}},
        {"name": "source_simclr", **src, "algorithm": {"name": "simclr", "temperature": 0.2},
         "train": {"steps": args.simclr_steps, "batch_size": 16, "mu": 4, "lr": 0.03,
                   "weight_decay": 1e-4, "ema": 0}},
        {"name": "target_scratch"},
        {"name": "target_finetune_supervised", "model": {"init": "@source_supervised"},
         "train": {"backbone_lr_scale": 0.1}},
        {"name": "target_probe_supervised",
         "model": {"init": "@source_supervised", "freeze_backbone": True}},
        {"name": "target_finetune_simclr", "model": {"init": "@source_simclr"},
         "train": {"backbone_lr_scale": 0.1}},
        {"name": "target_probe_simclr",
         "model": {"init": "@source_simclr", "freeze_backbone": True}},
    ]
    summary = aerossl.run_pipeline({"name": "pipeline", "output_dir": str(out), "base": base,
                                    "stages": stages})
    rows = {r["stage"]: r for r in summary["stages"]}
    probe, random_probe = probes(out / "pipeline" / "source_simclr", out / "random-init")
    scratch = rows["target_scratch"]["final_acc"]
    cpu = cpu_name()
    lines = [
        "# Transfer learning across UC Merced classes",
        "",
        f"- date: {dt.date.today()}; {cpu}, 1 thread per run (machine shared with other jobs); "
        f"torch {torch.__version__}, Python {platform.python_version()}",
        f"- data: {args.data}; 50/50 split per class; image size 32; model `cnn` (default "
        f"widths 32-64-128-256); seed {args.seed}",
        f"- source classes ({len(source_classes)}): {', '.join(source_classes)}",
        f"- target classes ({len(target_classes)}): {', '.join(target_classes)}; 4 labels per "
        "class (40 labelled images)",
        f"- source: supervised on all {len(source_classes)}x50 train-half labels "
        f"({args.source_steps} steps), or SimCLR on all source images without labels "
        f"({args.simclr_steps} steps, 16x4 images x 2 views per step, lr 0.03, temperature 0.2)",
        f"- target: supervised, {args.target_steps} steps, batch 32, lr 0.03 (cosine), "
        "EMA 0.999; new 10-class head; fine-tuning: backbone lr x0.1; probe: frozen backbone",
        f"- command: `python benchmarks/transfer_ucmerced.py --data {args.data}`",
        "",
        "Accuracy: final test accuracy (%) on the target classes' test half (500 images); best "
        "is the best evaluation during training (optimistic). Linear probe: logistic "
        "regression (L2 0.01) on the frozen features of the source's train half (550 labelled "
        "images), tested on the source's test half, for the SimCLR encoder at the end of "
        "pre-training and for the same encoder at its random initialisation.",
        "",
        "| run | final acc | best acc | vs scratch |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        if name.startswith("source"):
            extra = (f" (linear probe {probe:.1%}; the same encoder at random initialisation: "
                     f"{random_probe:.1%})" if r["linear_probe_acc"] is not None
                     else f" (source test acc {r['final_acc']:.1%})")
            lines.append(f"| {name}{extra} |  |  |  |")
            continue
        diff = 100 * (r["final_acc"] - scratch)
        lines.append(f"| {name} | {100 * r['final_acc']:.1f} | {100 * r['best_acc']:.1f} | "
                     f"{diff:+.1f} |")
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text("\n".join(lines) + "\n")
    print(args.result.read_text())
    return 0


def forgetting(args: argparse.Namespace, out: Path, source: Path, target: Path,
               source_classes: list[str], target_classes: list[str]) -> int:
    """LwF vs plain fine-tuning vs a frozen backbone: the source classes are the old task,
    the target classes the new one; old-task accuracy on the source's test half."""
    from aerossl.pipelines.old_task import old_task_accuracy

    base = {"seed": args.seed,
            "data": {"root": str(target), "image_size": 32, "labels_per_class": 4},
            "model": {"name": "cnn"},
            "algorithm": {"name": "supervised"},
            "train": {"steps": args.target_steps, "batch_size": 32, "lr": 0.03,
                      "eval_every": args.target_steps, "num_threads": 1, "progress": False,
                      "tensorboard": False},
            "report": []}
    init = {"model": {"init": "@source_supervised"}}
    stages = [
        {"name": "source_supervised", "data": {"root": str(source), "labels_per_class": None},
         "train": {"steps": args.source_steps, "eval_every": args.source_steps}},
        {"name": "target_scratch"},
        {"name": "target_finetune", **init, "train": {"backbone_lr_scale": 0.1}},
        {"name": "target_frozen_backbone",
         "model": {"init": "@source_supervised", "freeze_backbone": True}},
        {"name": "target_lwf", **init, "train": {"backbone_lr_scale": 0.1, "mu": 1},
         "algorithm": {"name": "lwf", "source": "@source_supervised"}},
        {"name": "target_lwf_labelled_only", **init, "train": {"backbone_lr_scale": 0.1},
         "algorithm": {"name": "lwf", "source": "@source_supervised", "unlabeled": False}},
    ]
    summary = aerossl.run_pipeline({"name": "forgetting", "output_dir": str(out), "base": base,
                                    "stages": stages})
    rows = {r["stage"]: r for r in summary["stages"]}
    src_run = out / "forgetting" / "source_supervised"
    source_acc = rows["source_supervised"]["final_acc"]
    cpu = cpu_name()
    lines = [
        "# Learning without Forgetting across UC Merced classes",
        "",
        f"- date: {dt.date.today()}; machine: {os.cpu_count()} cores, no GPU ({cpu}); 1 thread, "
        "pinned to core 0 (taskset -c 0); other engineers' tests on the other core; "
        f"torch {torch.__version__}, Python {platform.python_version()}",
        f"- data: {args.data}; 50/50 split per class; image size 32; model `cnn` (widths "
        f"32-64-128-256); seed {args.seed}; one seed only: differences of a few points are noise",
        f"- old task: {len(source_classes)} classes ({', '.join(source_classes)}), supervised "
        f"on all {len(source_classes)}x50 train-half labels, {args.source_steps} steps",
        f"- new task: the other {len(target_classes)} classes ({', '.join(target_classes)}), "
        f"4 labels per class (40 images), {args.target_steps} steps, batch 32, lr 0.03 "
        "(cosine), EMA 0.999, new 10-class head; fine-tuning and LwF: backbone lr x0.1; "
        "frozen backbone: head only",
        "- LwF (Li & Hoiem 2018): T=2, lambda_o=1, old head trained, distilled on the new "
        "task's images (labelled and, by default, the 500 unlabelled train-half images, 32 "
        "of them per step (train.mu=1); `labelled only`: the 40 labelled ones); no old-task "
        "image is used",
        "- short schedules to fit a CPU budget (the transfer benchmark's defaults are 1000 "
        "source / 800 target steps)",
        f"- command: `taskset -c 0 python benchmarks/transfer_ucmerced.py --lwf --data "
        f"{args.data} --source-steps {args.source_steps} --target-steps {args.target_steps}`",
        "",
        "Old task: accuracy on the old classes' test half (550 images) of the final network "
        "with its old head (LwF: the kept, distilled head; fine-tuning and frozen backbone: the "
        "original head on the changed / unchanged backbone). New task: final test accuracy on "
        "the new classes' test half (500 images). Retained: old-task accuracy / the original "
        "network's. The frozen backbone's old task differs from the original network only by "
        "the input normalisation (the transfer path uses the new run's own channel "
        "statistics). Minutes: wall-clock of the run on core 0, at times shared with the "
        "benchmarking engineer's own tests.",
        "",
        "| run | old-task acc | retained | new-task acc | minutes |",
        "|---|---|---|---|---|",
        f"| original network (before transfer) | {100 * source_acc:.1f} | 100% | - | "
        f"{_minutes(src_run):.1f} |",
    ]
    for name, r in rows.items():
        if name == "source_supervised":
            continue
        run = Path(r["run_dir"])
        if name == "target_scratch":
            old, kept = "-", "-"
        else:
            acc = old_task_accuracy(run, src_run)
            old, kept = f"{100 * acc:.1f}", f"{acc / source_acc:.0%}"
        lines.append(f"| {name} | {old} | {kept} | {100 * r['final_acc']:.1f} | "
                     f"{_minutes(run):.1f} |")
    result = args.result.with_name("transfer_ucmerced_lwf.md")
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text("\n".join(lines) + "\n")
    print(result.read_text())
    return 0


def _minutes(run_dir: Path) -> float:
    import json

    return float(json.loads((run_dir / "summary.json").read_text())["minutes"])


if __name__ == "__main__":
    sys.exit(main())
