"""Compare finished runs side by side: ``aerossl compare RUN_DIR... [--plot FILE]``.

Reads each run's ``summary.json`` (method, model, labels, accuracies, steps, minutes) and
``metrics.jsonl`` (test accuracy over steps) and prints a Markdown table; optionally plots
the test-accuracy curves of all runs in one PNG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from aerossl.errors import CheckpointError

COLUMNS = [("run", "run"), ("method", "method"), ("model", "model"), ("labels", "labels"),
           ("final_acc", "final acc"), ("best_acc", "best acc"), ("best_step", "best step"),
           ("steps", "steps"), ("minutes", "minutes")]


def _read_summary(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    path = run_dir / "summary.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no summary.json; not a run folder, or the run has "
                              "not finished (resume it with aerossl train --resume)")
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable run summary ({exc})") from None
    if not isinstance(summary, dict):
        raise CheckpointError(f"{path}: run summary is not a JSON object")
    return summary


def _num(value: Any, kind: type = float) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def compare_runs(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One row per run: run, method, model, labels, final_acc, best_acc, best_step, steps,
    minutes, run_dir. Raises :class:`CheckpointError` naming a missing or invalid folder."""
    if not run_dirs:
        raise CheckpointError("no run folders given")
    rows = []
    for raw in run_dirs:
        run_dir = Path(raw)
        s = _read_summary(run_dir)
        rows.append({
            "run": run_dir.resolve().name,
            "method": str(s.get("algorithm", "?")),
            "model": str(s.get("model", "?")),
            "labels": _num(s.get("num_labeled"), int),
            "final_acc": _num(s.get("final_acc")),
            "best_acc": _num(s.get("best_acc")),
            "best_step": _num(s.get("best_step"), int),
            "steps": _num(s.get("steps"), int),
            "minutes": _num(s.get("minutes")),
            "run_dir": str(run_dir),
        })
    return rows


def accuracy_curve(run_dir: str | Path) -> tuple[list[int], list[float]]:
    """Steps and test accuracies logged in a run's ``metrics.jsonl`` (bad lines skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    steps: list[int] = []
    accs: list[float] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return steps, accs
    for line in lines:
        try:
            m = json.loads(line)
            if m.get("split") != "test" or m.get("acc") is None:
                continue
            step, acc = int(m["step"]), float(m["acc"])
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if math.isfinite(acc):
            steps.append(step)
            accs.append(acc)
    return steps, accs


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("final_acc", "best_acc"):
        return f"{value:.4f}"
    if key == "minutes":
        return f"{value:.1f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`compare_runs` rows (aligned, readable in a terminal)."""
    cells = [[_fmt(k, r[k]) for k, _ in COLUMNS] for r in rows]
    heads = [h for _, h in COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    right = {"labels", "final_acc", "best_acc", "best_step", "steps", "minutes"}

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if k in right else v.ljust(w) for v, w, (k, _)
                                 in zip(values, widths, COLUMNS, strict=True)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if k in right else ("-" * (w + 2))
                         for w, (k, _) in zip(widths, COLUMNS, strict=True)) + "|"
    return "\n".join([line(heads), sep, *(line(c) for c in cells)])


def plot_curves(rows: list[dict[str, Any]], output_png: str | Path) -> Path:
    """Test accuracy over steps, one line per run; returns the PNG path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        steps, accs = accuracy_curve(r["run_dir"])
        final = f"{r['final_acc']:.1%}" if r["final_acc"] is not None else "-"
        label = f"{r['run']}: {r['method']} ({r['model']}, {r['labels']} labels), final {final}"
        ax.plot(steps, accs, marker="o", markersize=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("test accuracy")
    fig.tight_layout()
    output_png = Path(output_png)
    output_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output_png)
    return output_png


def write_comparison(run_dirs: list[str | Path], output_png: str | Path | None = None
                     ) -> tuple[str, Path | None]:
    """The Markdown table of the runs and, with ``output_png``, the plot's path."""
    rows = compare_runs(run_dirs)
    png = plot_curves(rows, output_png) if output_png else None
    return format_table(rows), png


__all__ = [
    "accuracy_curve",
    "compare_runs",
    "format_table",
    "plot_curves",
    "write_comparison",
]
