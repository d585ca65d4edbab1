"""Choose the few-label recipe by its mean over data sets and label budgets, not its best cell.

Reads finished ``aerossl sweep`` folders (one per data set; their ``sweep.json``) and writes
one table: per method, every (set, labels per class) cell's mean test accuracy over seeds with
its lowest per-class accuracy, then the method's mean over the cells every method has, its
worst cell and its mean lowest class. The method with the highest mean over the shared cells
is the recommendation (ties: the higher worst cell).

    python benchmarks/recipe_choice.py --sweep "UC Merced=/runs/ucmerced" \\
        --sweep "EuroSAT=/runs/eurosat" --methods fixmatch softmatch --baseline supervised \\
        --out benchmarks/results/recipe_choice.md --note "what else ran"

A candidate run as its own sweep (a method with options, e.g. label propagation with a
consistency term) joins under its own name with ``--extra NAME=METHOD@SET=DIR`` (repeat per
set): DIR's cells of METHOD are read as method NAME of set SET. Its cells must come from
sweeps with the same data section and seeds, so that a seed means the same labels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, cpu_name

from aerossl.pipelines.sweep import aggregate, parse_budget


def load_groups(sweep_dir: Path) -> dict[tuple[str, int], dict]:
    """``(method, labels per class) -> group`` of a sweep's ``sweep.json``."""
    data = json.loads((sweep_dir / "sweep.json").read_text())
    return {(g["method"], int(g["labels_per_class"])): g for g in data["groups"]
            if g.get("labels_per_class") is not None}


def load_cells(sweep_dir: Path) -> list[dict] | None:
    """A sweep's finished cells (``sweep.json``), or None for a file without per-cell rows."""
    data = json.loads((sweep_dir / "sweep.json").read_text())
    if "cells" not in data:
        return None
    return [c for c in data["cells"]
            if c.get("final_acc") is not None and c.get("labels_per_class") is not None]


def extra_cells(sweep_dir: Path, method: str, name: str) -> list[dict]:
    """``sweep_dir``'s finished cells of ``method``, renamed ``name``."""
    cells = load_cells(sweep_dir)
    if cells is None:
        raise SystemExit(f"{sweep_dir}/sweep.json: no per-cell rows to read {method} from")
    picked = [{**c, "method": name} for c in cells if c["method"] == method]
    if not picked:
        raise SystemExit(f"{sweep_dir}/sweep.json: no finished {method} cell")
    return picked


def balance(cells: list[dict], methods: list[str]
            ) -> tuple[dict[tuple[str, int], dict], list[tuple[str, int, int]]]:
    """Per ``(method, labels per class)`` the group of ``cells`` over the seeds that every one
    of ``methods`` present at that budget has finished, so that no method's mean has a seed (a
    split and its labels) the others lack. Returns the groups and the left-out cells
    ``(method, labels per class, seed)``."""
    done: dict[tuple[str, int], dict[int, dict]] = {}
    for c in cells:
        done.setdefault((c["method"], int(c["labels_per_class"])), {})[int(c["seed"])] = c
    kept: list[dict] = []
    left_out: list[tuple[str, int, int]] = []
    for k in sorted({k for _, k in done}):
        present = [m for m in methods if (m, k) in done]
        common = set.intersection(*(set(done[(m, k)]) for m in present)) if present else set()
        for m in present:
            kept += [done[(m, k)][s] for s in sorted(common)]
            left_out += [(m, k, s) for s in sorted(set(done[(m, k)]) - common)]
    budgets = [parse_budget(t) for t in sorted({c["budget"] for c in kept})]
    groups = {(g["method"], int(g["labels_per_class"])): g
              for g in aggregate(kept, budgets, methods)}
    return groups, left_out


def load_balanced(sweep_dir: Path, methods: list[str], extra: list[dict] | None = None
                  ) -> tuple[dict[tuple[str, int], dict], list[tuple[str, int, int]]]:
    """:func:`balance` over a sweep's cells and ``extra`` cells (other sweeps' candidates).
    A ``sweep.json`` without per-cell rows is read as it is (no extra cells allowed)."""
    cells = load_cells(sweep_dir)
    if cells is None:
        if extra:
            raise SystemExit(f"{sweep_dir}/sweep.json: no per-cell rows to merge --extra with")
        return load_groups(sweep_dir), []
    return balance([*cells, *(extra or [])], methods)


def choose(sets: dict[str, dict], methods: list[str]) -> tuple[list[dict], list[tuple]]:
    """Per method its mean, worst cell and mean lowest class over the (set, budget) cells
    that every method has; sorted best first."""
    per_method = [{(name, k) for name, groups in sets.items() for (m, k) in groups
                   if m == method} for method in methods]
    shared = sorted(set.intersection(*per_method)) if per_method else []
    rows = []
    for method in methods:
        accs = [sets[s][(method, k)]["mean"] for s, k in shared]
        lows = [sets[s][(method, k)].get("min_class") for s, k in shared]
        rows.append({"method": method, "cells": len(shared),
                     "mean": float(np.mean(accs)) if accs else float("nan"),
                     "worst": float(min(accs)) if accs else float("nan"),
                     "mean_lowest_class": float(np.mean(lows)) if lows and None not in lows
                     else None})
    rows.sort(key=lambda r: (r["mean"], r["worst"]), reverse=True)
    return rows, shared


def cell_text(g: dict | None) -> str:
    if g is None:
        return "-"
    low = "" if g.get("min_class") is None else f" (lowest class {100 * g['min_class']:.1f})"
    spread = f" ± {100 * g['std']:.1f}" if g["n"] > 1 else ""
    return f"{100 * g['mean']:.1f}{spread} [{g['n']}]{low}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="append", required=True, metavar="NAME=DIR",
                    help="a data set's name and its finished sweep folder (repeat)")
    ap.add_argument("--methods", nargs="+", required=True, help="the candidate methods")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=METHOD@SET=DIR",
                    help="cells of METHOD in sweep folder DIR join set SET as candidate NAME "
                         "(repeat per set)")
    ap.add_argument("--baseline", nargs="*", default=["supervised"],
                    help="methods shown but not candidates")
    ap.add_argument("--out", required=True, help="markdown file to write (and .json beside)")
    ap.add_argument("--note", default="", help="what else ran on the machine, how cells ran")
    ap.add_argument("--copy-plots", action="store_true",
                    help="copy each sweep's sweep.png beside the table as <out>_<set>.png")
    args = ap.parse_args()

    extras: dict[str, list[dict]] = {}
    extra_names: list[str] = []
    for item in args.extra:
        name, _, rest = item.partition("=")
        method, _, rest = rest.partition("@")
        set_name, _, folder = rest.partition("=")
        if not (name and method and set_name and folder):
            raise SystemExit(f"--extra {item!r}: expected NAME=METHOD@SET=DIR")
        extras.setdefault(set_name, []).extend(extra_cells(Path(folder), method, name))
        if name not in extra_names:
            extra_names.append(name)
    candidates = [*args.methods, *extra_names]
    sets: dict[str, dict] = {}
    dirs: dict[str, Path] = {}
    left_out: dict[str, list[tuple[str, int, int]]] = {}
    for item in args.sweep:
        name, _, folder = item.partition("=")
        dirs[name] = Path(folder)
        sets[name], left_out[name] = load_balanced(Path(folder),
                                                   [*args.baseline, *candidates],
                                                   extras.pop(name, None))
    if extras:
        raise SystemExit(f"--extra names sets without a --sweep: {', '.join(extras)}")
    ranking, shared = choose(sets, candidates)
    out = Path(args.out)
    budgets = sorted({k for groups in sets.values() for (_, k) in groups})
    lines = [
        "# The few-label recipe: methods by their mean over data sets and label budgets", "",
        f"- Date: {dt.date.today()}; machine: {cpu_name()}, no GPU.",
        f"- Command: `{command('recipe_choice.py')}`",
        f"- Sweeps read: {', '.join(f'{n}: `{d}`' for n, d in dirs.items())}.",
    ]
    if args.note:
        lines.append(f"- {args.note}")
    lines += [
        "- Cells: test accuracy (%) of the final EMA weights, mean ± std over seeds [number of "
        "seeds] and the lowest per-class accuracy of any seed; same labels for every method of "
        "a seed. Each budget of a set counts only the seeds that every method run at it has "
        "finished."]
    skipped = [f"{n} {m} {k} label{'s' if k > 1 else ''} seed {s}"
               for n, cells in left_out.items() for m, k, s in cells]
    if skipped:
        lines += ["- Finished cells left out (a seed the other methods of that budget lack): "
                  + ", ".join(skipped) + "."]
    lines += [
        "",
        "| set | method | " + " | ".join(f"{k} label{'s' if k > 1 else ''}/class"
                                      for k in budgets) + " |",
        "|---|---|" + "---|" * len(budgets)]
    for name, groups in sets.items():
        for method in [*args.baseline, *candidates]:
            if not any(m == method for m, _ in groups):
                continue
            lines.append(f"| {name} | {method} | " + " | ".join(
                cell_text(groups.get((method, k))) for k in budgets) + " |")
    lines += ["", f"Candidates over the {len(shared)} cells every candidate has "
              f"({', '.join(f'{s} {k}' for s, k in shared)}):", "",
              "| rank | method | mean over cells | worst cell | mean lowest class |",
              "|---|---|---|---|---|"]
    for i, r in enumerate(ranking, start=1):
        low = "-" if r["mean_lowest_class"] is None else f"{100 * r['mean_lowest_class']:.1f}"
        lines.append(f"| {i} | {r['method']} | {100 * r['mean']:.1f} | "
                     f"{100 * r['worst']:.1f} | {low} |")
    if ranking:
        lines += ["", f"Recommended by this rule: **{ranking[0]['method']}**."]
    lines += ["", "The shared cells side by side (mean over the cell's seeds, lowest class of "
              "any seed in brackets):", "",
              "| set, labels/class [seeds] | " + " | ".join(candidates) + " |",
              "|---|" + "---|" * len(candidates)]
    for s, k in shared:
        n = sets[s][(candidates[0], k)]["n"]
        lines.append(f"| {s}, {k} [{n}] | " + " | ".join(
            f"{100 * sets[s][(m, k)]['mean']:.1f}" + (
                "" if sets[s][(m, k)].get("min_class") is None
                else f" ({100 * sets[s][(m, k)]['min_class']:.0f})") for m in candidates) + " |")
    by_name = {r["method"]: r for r in ranking}
    lines.append("| mean of the cells | " + " | ".join(
        f"{100 * by_name[m]['mean']:.1f}" for m in candidates) + " |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({
        "ranking": ranking, "shared_cells": shared,
        "sets": {n: [g for g in groups.values()] for n, groups in sets.items()},
        "left_out": {n: [list(c) for c in cells] for n, cells in left_out.items()}}, indent=2))
    if args.copy_plots:
        for name, folder in dirs.items():
            png = folder / "sweep.png"
            if png.is_file():
                slug = name.lower().replace(" ", "_")
                shutil.copyfile(png, out.with_name(f"{out.stem}_{slug}.png"))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
