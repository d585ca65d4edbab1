"""What a run report reads from a run folder: ``metrics.jsonl`` as per-split series, JSON
files and split files, each tolerant of missing or broken input (noted, never fatal)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aerossl.engine.report_plots import Series


@dataclass
class Metrics:
    """Per-split numeric series parsed from ``metrics.jsonl``."""

    train: dict[str, Series] = field(default_factory=dict)
    test: dict[str, Series] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def is_number(value: Any) -> bool:
    """True for int/float values (not bools)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """Load a JSON object, or None (with a note) when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        notes.append(f"{path.name} could not be read: {exc}")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.name} is not a JSON object; ignored.")
        return None
    return data


def read_metrics(path: Path) -> Metrics:
    """Parse ``metrics.jsonl``: skip bad lines, drop non-finite values, last write per step wins."""
    metrics = Metrics()
    if not path.is_file():
        return metrics
    raw: dict[str, dict[str, dict[int, float]]] = {"train": {}, "test": {}}
    bad_lines: list[int] = []
    non_finite: dict[str, list[int]] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad_lines.append(lineno)
                continue
            if not isinstance(row, dict) or not is_number(row.get("step")):
                bad_lines.append(lineno)
                continue
            step = int(row["step"])
            split = "test" if row.get("split") == "test" else "train"
            for key, value in row.items():
                # the engine logs a NaN/inf value as null; a null loss is such a value
                if value is None and key.startswith("loss"):
                    value = math.nan
                if key in ("step", "split") or not is_number(value):
                    continue
                if not math.isfinite(value):
                    non_finite.setdefault(f"{split} {key}", []).append(step)
                    continue
                raw[split].setdefault(key, {})[step] = float(value)
    for split, series in raw.items():
        target = metrics.train if split == "train" else metrics.test
        for key, points in series.items():
            steps = np.array(sorted(points), dtype=np.int64)
            target[key] = (steps, np.array([points[s] for s in steps], dtype=np.float64))
    if bad_lines:
        shown = ", ".join(map(str, bad_lines[:5])) + (" ..." if len(bad_lines) > 5 else "")
        metrics.notes.append(f"metrics.jsonl: {len(bad_lines)} bad line(s) skipped ({shown}).")
    for key, steps in sorted(non_finite.items()):
        metrics.notes.append(
            f"metrics.jsonl: {key} was NaN/inf {len(steps)} time(s), first at step {steps[0]}."
        )
    return metrics


def count_lines(path: Path) -> int | None:
    """Number of entries (non-empty, non-comment lines) in a split file, or None if missing."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line.strip() and not line.startswith("#"))


def eval_arrays(
    evaluation: dict[str, Any], notes: list[str]
) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
    """Class names, per-class accuracy and confusion matrix from ``eval.json`` (validated)."""
    matrix = None
    try:
        if evaluation.get("confusion_matrix") is not None:
            matrix = np.array(evaluation["confusion_matrix"], dtype=np.float64)
            if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
                notes.append("eval.json: confusion_matrix is not a square matrix; skipped.")
                matrix = None
            elif not np.isfinite(matrix).all():
                notes.append("eval.json: non-finite confusion_matrix entries counted as 0.")
                matrix = np.nan_to_num(matrix, nan=0.0, posinf=0.0, neginf=0.0)
        per_class = evaluation.get("per_class_accuracy")
        accuracy = (
            None
            if per_class is None
            else np.array([np.nan if v is None else v for v in per_class], dtype=np.float64)
        )
    except (TypeError, ValueError):
        notes.append("eval.json: per_class_accuracy/confusion_matrix are not numeric; skipped.")
        return [], None, None
    if accuracy is None and matrix is not None:
        totals = matrix.sum(axis=1)
        accuracy = np.divide(
            np.diag(matrix), totals, out=np.full(totals.shape, np.nan), where=totals > 0
        )
    n = len(accuracy) if accuracy is not None else matrix.shape[0] if matrix is not None else 0
    if matrix is not None and matrix.shape[0] != n:
        notes.append("eval.json: per_class_accuracy and confusion_matrix sizes differ.")
        matrix = None
    classes = evaluation.get("classes")
    if not isinstance(classes, list) or len(classes) != n:
        classes = [f"class {i}" for i in range(n)]
    return [str(name) for name in classes], accuracy, matrix
