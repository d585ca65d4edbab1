"""SSL methods vs supervised-only on UC Merced at 4 labels per class (50/50 split, same labels).

Runs every (method, seed) with the shipped ``ucmerced_<method>`` configs, each as its own
``aerossl train`` process, then writes a Markdown table with accuracy per method and seed,
minutes, steps, the end-of-run mask rate and pseudo-label accuracy, and the share of the step
time spent outside the model's forward and backward passes.

    python benchmarks/ucmerced_4labels.py --data ../shared/data/ucmerced --seeds 0 1 --jobs 2

``--methods`` picks the methods (default: supervised and FixMatch) and ``--steps`` gives every
method the same step budget, e.g. the all-methods table::

    python benchmarks/ucmerced_4labels.py --data ../shared/data/ucmerced --seeds 0 1 --jobs 2 \
        --methods all --steps 1500 --output-dir runs/bench-methods \
        --out benchmarks/results/ssl_methods_ucmerced.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from report import command, cpu_name

DEFAULT_METHODS = ("supervised", "fixmatch")


def shipped_methods() -> list[str]:
    """Methods with a shipped ``ucmerced_<method>`` config that needs nothing but the images
    (``ucmerced_metadata`` needs a metadata file: see ``benchmarks/metadata_ucmerced.py``)."""
    from aerossl.api import find_config, shipped_configs
    from aerossl.validate import load_config

    names = [c.removeprefix("ucmerced_") for c in shipped_configs() if c.startswith("ucmerced_")
             and load_config(find_config(c)).data.metadata == "none"]
    return sorted(names, key=lambda m: (m != "supervised", m))


def run_all(args: argparse.Namespace) -> list[Path]:
    """Launch the runs, ``args.jobs`` at a time; return their run folders."""
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    pending, running, dirs = [], [], []
    # seed-major, so a complete table for the first seed exists early; long runs first
    methods = sorted(args.methods, key=lambda m: m == "supervised")
    for seed, method in [(s, m) for s in args.seeds for m in methods]:
        name = f"{method}-s{seed}"
        run_dir = Path(args.output_dir) / name
        dirs.append(run_dir)
        if (run_dir / "summary.json").is_file() and not args.rerun:
            continue
        cmd = [sys.executable, "-m", "aerossl.cli", "train", f"ucmerced_{method}",
               f"data.root={args.data}", f"seed={seed}", f"name={name}",
               f"output_dir={args.output_dir}", f"train.num_threads={threads}",
               "train.progress=false", *args.common, *args.overrides.get(method, [])]
        if run_dir.exists() and (run_dir / "checkpoints" / "last.pt").is_file():
            cmd = [sys.executable, "-m", "aerossl.cli", "train", "--resume", str(run_dir),
                   f"train.num_threads={threads}"]
        elif run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        pending.append((name, cmd))
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < args.jobs:
            name, cmd = pending.pop(0)
            log = open(Path(args.output_dir) / f"{name}.log", "w")  # noqa: SIM115
            print(f"[{time.strftime('%H:%M:%S')}] start {name}: {' '.join(cmd[2:])}", flush=True)
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT),
                            log))
        time.sleep(5)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                print(f"[{time.strftime('%H:%M:%S')}] done {name} (exit {proc.returncode})",
                      flush=True)
                if proc.returncode:
                    raise SystemExit(f"{name} failed; see {log.name}")
    return dirs


def last_train_row(run_dir: Path) -> dict:
    """The last logged training row of a run."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"][-1]


def outside_model_share(run_dir: Path) -> float:
    """Share of step time outside the model's forward/backward, over the whole run."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "train" and r.get("time/model")]
    data = sum(r["time/data"] for r in rows)
    model = sum(r["time/model"] for r in rows)
    optim = sum(r["time/optim"] for r in rows)
    return (data + optim) / (data + model + optim)


def write_table(dirs: list[Path], args: argparse.Namespace) -> str:
    """Render the results as Markdown."""
    rows, acc = [], {m: {} for m in args.methods}  # method -> seed -> final accuracy
    for run_dir in dirs:
        s = json.loads((run_dir / "summary.json").read_text())
        last = last_train_row(run_dir)
        acc[s["algorithm"]][s["seed"]] = s["final_acc"]
        mask = last.get("mask_rate")
        pl = last.get("pseudo_acc")
        rows.append(
            f"| {s['algorithm']} | {s['seed']} | {100 * s['final_acc']:.1f} | "
            f"{100 * s['best_acc']:.1f} | {s['steps']} | {s['minutes']:.1f} | "
            f"{'' if mask is None else f'{100 * mask:.0f}%'} | "
            f"{'' if pl is None else f'{100 * pl:.1f}'} | "
            f"{100 * outside_model_share(run_dir):.1f}% |"
        )
    mean = {m: 100 * sum(v.values()) / len(v) for m, v in acc.items() if v}
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    configs = ", ".join(f"`ucmerced_{m}`" for m in args.methods)
    title = ("supervised-only vs FixMatch" if set(args.methods) == set(DEFAULT_METHODS)
             else "SSL methods vs supervised-only")
    lines = [
        f"# UC Merced, 4 labels per class: {title}",
        "",
        f"- date: {dt.date.today().isoformat()}",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, {args.jobs} runs at a time with "
        f"{threads} thread(s) each; torch {torch.__version__}, Python {platform.python_version()}",
        f"- data: {args.data} (2,100 images, 21 classes), 50/50 stratified split per class, "
        "4 labelled images per class (84), the split and labels drawn from the seed",
        f"- configs: {configs} (shipped), overrides for all: {args.common or 'none'}, "
        f"per method: {args.overrides or 'none'}",
        f"- command: `{command('ucmerced_4labels.py')}`",
        "",
        "Accuracy is the test accuracy (%) of the EMA weights at the end of training (final); "
        "best is the best evaluation during training (optimistic: chosen on the test split). "
        "Mask rate and pseudo-label accuracy (of the accepted pseudo-labels) are over the last "
        "logging window, for methods that threshold their guesses. "
        "Outside-model is the share of the training step's time spent outside the model's "
        "forward and backward passes (batch assembly, augmentation, optimiser and EMA).",
        "",
        "| method | seed | final acc | best acc | steps | minutes | mask rate | "
        "pseudo-label acc | outside model |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "| method | mean final acc | seeds | minus supervised (same seeds) |",
        "|---|---|---|---|",
    ]
    sup = acc.get("supervised", {})
    for m, v in sorted(mean.items(), key=lambda kv: -kv[1]):
        seeds = sorted(acc[m])
        paired = [100 * (acc[m][k] - sup[k]) for k in seeds if k in sup]
        delta = f"{sum(paired) / len(paired):+.1f}" if paired and m != "supervised" else ""
        lines.append(f"| {m} | **{v:.1f}** | {', '.join(map(str, seeds))} | {delta} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="UC Merced folder of class folders")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (threads split evenly)")
    p.add_argument("--output-dir", default="runs/bench-ucmerced")
    p.add_argument("--out", default="benchmarks/results/ucmerced_4labels.md")
    p.add_argument("--rerun", action="store_true", help="retrain runs that already finished")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                   help="methods to run ('all': every shipped ucmerced_<method> config)")
    p.add_argument("--steps", type=int, help="the same step budget for every method")
    p.add_argument("--threads", type=int, help="threads per run (default: cores / jobs)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of every run")
    p.add_argument("--supervised", nargs="*", default=[], help="overrides of the supervised runs")
    p.add_argument("--fixmatch", nargs="*", default=[], help="overrides of the FixMatch runs")
    args = p.parse_args()
    if args.methods == ["all"]:
        args.methods = shipped_methods()
    args.common = list(args.set)
    if args.steps:
        args.common += [f"train.steps={args.steps}", f"train.eval_every={args.steps}"]
    args.overrides = {m: getattr(args, m) for m in DEFAULT_METHODS if getattr(args, m)}
    dirs = run_all(args)
    table = write_table(dirs, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
