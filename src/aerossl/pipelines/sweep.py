"""The label-budget sweep: how much do the unlabelled images buy at each label budget?

``aerossl sweep CONFIG --labels 1 2 4 10 1% 10% all --methods supervised fixmatch --seeds 0 1``
trains every (method, budget, seed) cell of the grid as an ordinary run folder under one sweep
folder ``output_dir/name/<method>_<budget>_s<seed>``. A budget is a number of labels per class
(``4``), a percentage of each class's train part (``10%``: of the smallest class's, rounded, at
least 1) or ``all``. The split depends on the seed only (``data.split_seed``, default the run's
seed), so every method of a seed sees the same labelled images, and for one seed a smaller
budget's labelled images are a subset of a larger one's.

Running the same sweep again skips finished cells and resumes a stopped one from its last
checkpoint. After each cell the sweep writes ``sweep.md``, ``sweep.csv`` (one row per cell) and
``sweep.json`` (cells and per-budget mean, std, min and max over seeds, and the lowest
per-class test accuracy of any seed: a class whose pseudo-labels a neighbour absorbed shows
there, not in the mean); at the end also
``sweep.png`` (accuracy vs labelled images, one line per method: mean over seeds with their
spread) and the compare view of all cells (``compare.md``, ``compare.png``).

``--report`` trains nothing: it writes the same files from the grid's finished cells, for a
sweep whose cells run in several processes (one per core or machine, each its own part of the
grid) or one stopped part-way; the table says how many of the planned cells it covers.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aerossl.config import Config, apply_overrides, raw_config_of, with_algorithm
from aerossl.errors import ConfigError
from aerossl.validate import config_from_dict

log = logging.getLogger("aerossl")

DEFAULT_LABELS = ("1", "2", "4", "10", "1%", "10%", "all")


@dataclass(frozen=True)
class Budget:
    """One label budget of the grid: per class (``per_class``), a percentage, or all."""

    text: str
    per_class: int | None = None
    percent: float | None = None

    @property
    def tag(self) -> str:
        """Folder-safe name: ``4``, ``10pct``, ``all``."""
        if self.percent is not None:
            return f"{self.percent:g}pct".replace(".", "p")
        return "all" if self.per_class is None else str(self.per_class)


def parse_budget(text: str | int) -> Budget:
    """``4`` (labels per class), ``10%`` (of each class's train part) or ``all``."""
    s = str(text).strip().lower()
    if s == "all":
        return Budget("all")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", s)
    if m:
        p = float(m.group(1))
        if not 0 < p <= 100:
            raise ConfigError(f"--labels: {text!r}: a percentage must lie in (0, 100]")
        return Budget(f"{p:g}%", percent=p)
    if re.fullmatch(r"\d+", s) and int(s) >= 1:
        return Budget(s, per_class=int(s))
    raise ConfigError(f"--labels: {text!r} is not a label budget; use a number of labels per "
                      "class (4), a percentage of each class's train part (10%) or 'all'")


def train_counts(cfg: Config) -> np.ndarray:
    """Images per class of the train part the labels are drawn from (the train pool file's,
    or each class minus its test share)."""
    from aerossl.data.splits import read_split_files
    from aerossl.engine.data import read_dataset

    dataset, _ = read_dataset(cfg.data)
    labels = np.asarray(dataset.labels)
    if labels.ndim != 1:
        raise ConfigError("sweep: percentage budgets apply to single-label data; give labels "
                          "per class instead")
    k = len(dataset.classes)
    if cfg.data.train_pool_file:
        pool, _ = read_split_files(dataset, cfg.data.train_pool_file, None)
        return np.bincount(labels[pool], minlength=k)
    counts = np.bincount(labels, minlength=k)
    return counts - np.array([round(cfg.data.test_fraction * int(n)) for n in counts])


def labels_per_class(budget: Budget, counts: np.ndarray | None) -> int | None:
    """The ``data.labels_per_class`` of a budget."""
    if budget.percent is None:
        return budget.per_class
    assert counts is not None
    return max(1, round(budget.percent / 100 * int(counts.min())))


@dataclass
class SweepResult:
    """A sweep's folder, its cells (one dict per run) and per (method, budget) aggregates."""

    sweep_dir: Path
    cells: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)


def cell_configs(raw: dict[str, Any], budgets: list[Budget], methods: list[str],
                 seeds: list[int], sweep_dir: Path) -> list[dict[str, Any]]:
    """Every cell of the grid (seed, budget, method order) with its validated raw config."""
    from aerossl.pipelines.stages import with_default_pipelines

    base = config_from_dict(raw, "sweep config")
    counts = train_counts(base) if any(b.percent is not None for b in budgets) else None
    cells = []
    for seed in seeds:
        for budget in budgets:
            k = labels_per_class(budget, counts)
            for method in methods:
                name = f"{method}_{budget.tag}_s{seed}"
                cell = with_algorithm(raw, method)
                cell = {**cell, "name": name, "output_dir": str(sweep_dir), "seed": seed,
                        "data": {**(cell.get("data") or {}), "labels_per_class": k}}
                cell = with_default_pipelines(cell)
                config_from_dict(cell, f"sweep cell {name}")  # every cell valid before training
                cells.append({"name": name, "method": method, "budget": budget.text,
                              "labels_per_class": k, "seed": seed, "raw": cell})
    return cells


def sweep(config: Config | str | Path | dict[str, Any],
          labels: list[str | int] | tuple[str | int, ...] = DEFAULT_LABELS,
          methods: list[str] | tuple[str, ...] = ("supervised", "fixmatch"),
          seeds: list[int] | tuple[int, ...] = (0, 1),
          overrides: list[str] | None = None, name: str = "sweep",
          output_dir: str | Path | None = None, plots: bool = True,
          train: bool = True) -> SweepResult:
    """Train (or continue) the grid of methods x label budgets x seeds; returns the result and
    writes the table, the plot and the compare view (see the module docstring). With
    ``train=False`` nothing trains: the tables and plots cover the grid's finished cells (a sweep
    whose cells ran in several processes, or one stopped part-way), the others are counted as
    not finished."""
    from aerossl.pipelines.stages import run_stage

    if not methods or not seeds or not labels:
        raise ConfigError("sweep: give at least one method, one label budget and one seed")
    budgets = [parse_budget(b) for b in labels]
    raw = apply_overrides(raw_config_of(config), overrides)
    sweep_dir = Path(output_dir if output_dir is not None else raw.get("output_dir", "runs")) / name
    cells = cell_configs(raw, budgets, list(methods), [int(s) for s in seeds], sweep_dir)
    for i, cell in enumerate(cells, start=1):
        summary_path = sweep_dir / cell["name"] / "summary.json"
        if train:
            log.info("sweep %s: cell %d/%d %s", name, i, len(cells), cell["name"])
            summary = run_stage(cell["raw"], sweep_dir / cell["name"],
                                f"sweep cell {cell['name']}")
        elif summary_path.is_file():
            summary = json.loads(summary_path.read_text())
        else:
            log.info("sweep %s: cell %s not finished, left out", name, cell["name"])
            continue
        cell.update(run_dir=str(sweep_dir / cell["name"]), num_labeled=summary["num_labeled"],
                    final_acc=summary["final_acc"], best_acc=summary["best_acc"],
                    steps=summary["steps"], minutes=summary["minutes"],
                    min_class_acc=lowest_class(sweep_dir / cell["name"]))
        if train:
            write_tables(sweep_dir, cells, budgets, list(methods))
    finished = [c for c in cells if c.get("final_acc") is not None]
    if not finished:
        raise ConfigError(f"sweep {name}: no finished cell of this grid in {sweep_dir}")
    result = SweepResult(sweep_dir, [_public(c) for c in finished],
                         aggregate(cells, budgets, list(methods)))
    result.files = write_tables(sweep_dir, cells, budgets, list(methods))
    if plots:
        from aerossl.runs.compare import write_comparison

        result.files["plot"] = plot_sweep(result.groups, result.cells, sweep_dir / "sweep.png")
        table, png = write_comparison([c["run_dir"] for c in finished],
                                      sweep_dir / "compare.png")
        (sweep_dir / "compare.md").write_text(table + "\n")
        result.files.update(compare=sweep_dir / "compare.md", compare_plot=png)
    return result


def lowest_class(run_dir: Path) -> float | None:
    """The lowest per-class test accuracy of a finished run (``eval.json``); None for runs
    without one (multi-label)."""
    path = run_dir / "eval.json"
    if not path.is_file():
        return None
    per_class = json.loads(path.read_text()).get("per_class_accuracy")
    return float(min(per_class)) if per_class else None


def _public(cell: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cell.items() if k != "raw"}


def aggregate(cells: list[dict[str, Any]], budgets: list[Budget], methods: list[str]
              ) -> list[dict[str, Any]]:
    """Per (budget, method) of the finished cells: labelled images, mean, std (over seeds,
    ddof 1; 0 for one seed), min, max, the lowest per-class accuracy of any seed
    (``min_class``) and the number of seeds."""
    groups = []
    for budget in budgets:
        for method in methods:
            done = [c for c in cells if c["budget"] == budget.text and c["method"] == method
                    and c.get("final_acc") is not None]
            if not done:
                continue
            accs = np.array([c["final_acc"] for c in done], dtype=float)
            lows = [c.get("min_class_acc") for c in done]
            groups.append({
                "budget": budget.text, "method": method,
                "labels_per_class": done[0]["labels_per_class"],
                "num_labeled": float(np.mean([c["num_labeled"] for c in done])),
                "mean": float(accs.mean()), "std": float(accs.std(ddof=1)) if len(accs) > 1
                else 0.0, "min": float(accs.min()), "max": float(accs.max()),
                "min_class": None if None in lows else float(min(lows)),
                "seeds": [c["seed"] for c in done], "n": len(done)})
    return groups


CSV_FIELDS = ["method", "budget", "labels_per_class", "seed", "num_labeled", "final_acc",
              "min_class_acc", "best_acc", "steps", "minutes", "run_dir"]


def write_tables(sweep_dir: Path, cells: list[dict[str, Any]], budgets: list[Budget],
                 methods: list[str]) -> dict[str, Path]:
    """``sweep.md`` (mean ± std over seeds per budget and method), ``sweep.csv`` (one row per
    finished cell) and ``sweep.json`` (both)."""
    from aerossl.engine.checkpoint import writing

    groups = aggregate(cells, budgets, methods)
    done = [_public(c) for c in cells if c.get("final_acc") is not None]
    files = {"markdown": sweep_dir / "sweep.md", "csv": sweep_dir / "sweep.csv",
             "json": sweep_dir / "sweep.json"}
    with writing(sweep_dir):
        sweep_dir.mkdir(parents=True, exist_ok=True)
        files["markdown"].write_text(sweep_markdown(groups, budgets, methods, len(done),
                                                    len(cells)))
        with files["csv"].open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(done)
        files["json"].write_text(json.dumps({"cells": done, "groups": groups,
                                             "planned_cells": len(cells)}, indent=2))
    return files


def sweep_markdown(groups: list[dict[str, Any]], budgets: list[Budget], methods: list[str],
                   done: int, planned: int) -> str:
    """Rows: label budgets; columns: methods, ``mean ± std (n seeds)`` test accuracy in %."""
    by = {(g["budget"], g["method"]): g for g in groups}
    lines = ["| labels | labelled images | " + " | ".join(methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    for b in budgets:
        row = [g for m in methods if (g := by.get((b.text, m)))]
        if not row:
            continue
        per = "" if b.per_class is not None or b.percent is None else \
            f" ({row[0]['labels_per_class']}/class)"
        cells = []
        for m in methods:
            g = by.get((b.text, m))
            low = "" if g is None or g["min_class"] is None else \
                f", lowest class {100 * g['min_class']:.1f}"
            cells.append("-" if g is None else
                         f"{100 * g['mean']:.1f} ± {100 * g['std']:.1f} ({g['n']}){low}")
        lines.append(f"| {b.text}{per} | {row[0]['num_labeled']:g} | " + " | ".join(cells) + " |")
    note = (f"\nTest accuracy (%) of the final weights, mean ± standard deviation over seeds "
            f"(number of seeds), and the lowest per-class accuracy of any seed; {done} of "
            f"{planned} cells finished.\n")
    return "\n".join(lines) + "\n" + note


def plot_sweep(groups: list[dict[str, Any]], cells: list[dict[str, Any]], png: Path) -> Path:
    """Accuracy vs labelled images (log scale), one line per method: the mean over seeds, a
    band from min to max and every seed's point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(g["method"] for g in groups))
    for k, method in enumerate(methods):
        color = f"C{k}"
        gs = sorted((g for g in groups if g["method"] == method), key=lambda g: g["num_labeled"])
        x = [g["num_labeled"] for g in gs]
        ax.plot(x, [g["mean"] for g in gs], marker="o", color=color, label=f"{method} (mean)")
        ax.fill_between(x, [g["min"] for g in gs], [g["max"] for g in gs], color=color,
                        alpha=0.2, linewidth=0)
        pts = [c for c in cells if c["method"] == method and c.get("final_acc") is not None]
        ax.scatter([c["num_labeled"] for c in pts], [c["final_acc"] for c in pts], s=10,
                   color=color, alpha=0.6)
    ticks = sorted({g["num_labeled"] for g in groups})
    if ticks and ticks[0] > 0:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel("labelled images")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, which="both")
    seeds = sorted({c["seed"] for c in cells if c.get("final_acc") is not None})
    ax.set_title(f"label-budget sweep: mean over seeds {seeds}, band = min to max")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    return png


__all__ = ["Budget", "SweepResult", "aggregate", "parse_budget", "plot_sweep",
           "sweep", "sweep_markdown"]
