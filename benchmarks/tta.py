"""Test-time augmentation on trained runs: each run's final weights evaluated on its own test
split once per ``--tta`` mode (``aerossl evaluate RUN --tta MODE``), in one table.

A mode's accuracy is set beside the run's accuracy without it (and the accuracy the run logged
at its end, which ``none`` reproduces), with the lowest per-class accuracy; the summary
averages the gain per method and label budget over the runs given, so every method is
measured on the same seeds. The runs are not retrained: pass the run folders of a sweep
(``SWEEP/METHOD_LABELS_sSEED``).

    python benchmarks/tta.py /work/sweeps/demo_*/*_s2 --modes none dihedral --threads 1 \\
        --out benchmarks/results/tta_demo.md --meanwhile "nothing"

Beside the table, ``OUT.json`` keeps the rows with the date and command that measured them;
``--include`` puts such rows of earlier invocations (e.g. one per core) in one table, each
with its own date and command listed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, results_header, write_results

from aerossl import api
from aerossl.config import Config
from aerossl.models.tta import TTA_MODES
from aerossl.runs.loader import load_run_config


def method_name(cfg: Config) -> str:
    """The run's algorithm, ``+consistency`` for label propagation with its consistency term
    (the ``few_labels`` recipe)."""
    algo = cfg.algorithm
    name = algo.name
    if getattr(algo, "consistency", 0) > 0:
        name += " + consistency"
    return name


def evaluate_run(run_dir: Path, modes: list[str]) -> dict:
    """One row: the run's method, budget and seed, and per mode its test accuracy (%), lowest
    class (%) and the evaluation's minutes."""
    cfg = load_run_config(run_dir)
    summary = run_dir / "summary.json"
    logged = json.loads(summary.read_text())["final_acc"] if summary.is_file() else None
    row: dict = {"run": f"{run_dir.parent.name}/{run_dir.name}", "method": method_name(cfg),
                 "labels": cfg.data.labels_per_class, "seed": cfg.seed,
                 "logged": None if logged is None else 100 * logged}
    for mode in modes:
        start = time.perf_counter()
        res = api.evaluate(run_dir, "last", "cpu", mode)
        row[mode] = (100 * res["accuracy"], 100 * min(res["per_class_accuracy"]),
                     (time.perf_counter() - start) / 60)
    return row


def table(rows: list[dict], modes: list[str]) -> list[str]:
    """Per run: the accuracy the run logged at its end, accuracy (lowest class) per mode, and
    each mode's gain over the first."""
    base = modes[0]
    head = ["run", "method", "labels/class", "seed", "logged"] + [f"`{m}`" for m in modes]
    head += [f"`{m}` - `{base}`" for m in modes[1:]] + ["minutes per mode"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        logged = "-" if r.get("logged") is None else f"{r['logged']:.1f}"
        cells = [r["run"], r["method"], str(r["labels"]), str(r["seed"]), logged]
        cells += [f"{r[m][0]:.1f} ({r[m][1]:.0f})" for m in modes]
        cells += [f"{r[m][0] - r[base][0]:+.1f}" for m in modes[1:]]
        cells.append(" / ".join(f"{r[m][2]:.1f}" for m in modes))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(rows: list[dict], modes: list[str]) -> list[str]:
    """Mean accuracy per method and budget over the runs given, and the mean gain."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["labels"], r["method"])].append(r)
    base = modes[0]
    head = ["labels/class", "method", "runs (seeds)"] + [f"`{m}` mean" for m in modes]
    head += [f"`{m}` - `{base}` (each run)" for m in modes[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (labels, method), rs in sorted(groups.items()):
        seeds = ", ".join(str(r["seed"]) for r in rs)
        cells = [str(labels), method, f"{len(rs)} ({seeds})"]
        cells += [f"{statistics.mean(r[m][0] for r in rs):.1f}" for m in modes]
        cells += [f"{statistics.mean(r[m][0] - r[base][0] for r in rs):+.1f} ("
                  + ", ".join(f"{r[m][0] - r[base][0]:+.1f}" for r in rs) + ")"
                  for m in modes[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    """Evaluate the runs and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="run folders (with checkpoints/last.pt)")
    p.add_argument("--modes", nargs="+", default=["none", "dihedral"], choices=TTA_MODES,
                   help="--tta modes, the first the baseline")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--title", default="Test-time augmentation on trained runs")
    p.add_argument("--meanwhile", default="not stated", help="what else ran on the machine")
    p.add_argument("--include", nargs="*", type=Path, default=[],
                   help="OUT.json files of earlier invocations whose rows join the table")
    p.add_argument("--out", default=None, help="results file (Markdown; its rows also to .json)")
    args = p.parse_args()
    if not args.runs and not args.include:
        p.error("give run folders, --include files, or both")
    torch.set_num_threads(args.threads)
    rows = []
    for path in args.include:
        part = json.loads(path.read_text())
        if part["modes"] != args.modes:
            p.error(f"{path}: modes {part['modes']}, not {args.modes}")
        rows += part["rows"]
    measured = {"date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
                "command": command("tta.py"), "meanwhile": args.meanwhile}
    for run_dir in args.runs:
        rows.append({**evaluate_run(run_dir, args.modes), "measured": measured})
        print(table(rows[-1:], args.modes)[-1], flush=True)
    about = ("Final (EMA) weights of each run, its own test split; accuracy % with the lowest "
             f"per-class accuracy in brackets; {args.threads} torch thread(s).")
    lines = results_header(args.title, "tta.py", meanwhile=args.meanwhile, about=about)
    earlier: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["measured"] is not measured:
            m = r["measured"]
            earlier[f"{m['date']} by `{m['command']}` (meanwhile: {m['meanwhile']})"].append(
                r["run"])
    lines[-1:-1] = [f"- rows {', '.join(runs)}: measured {how}" for how, runs in earlier.items()]
    lines += ["## Per run", "", *table(rows, args.modes), "", "## Per method and budget", "",
              *summary(rows, args.modes), ""]
    write_results(args.out, "\n".join(lines))
    if args.out:
        Path(args.out).with_suffix(".json").write_text(
            json.dumps({"modes": args.modes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
