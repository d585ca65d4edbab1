"""Run report: plots, ``report.md`` and one self-contained ``report.html`` for a run folder.

The report reads what the training engine wrote (``metrics.jsonl``, ``summary.json``,
``eval.json``, ``config.yaml``, ``split/*.txt``); every file is optional and a section whose
input is missing or unreadable is left out. Plots are drawn with matplotlib's Agg canvas on
standalone ``Figure`` objects, so pyplot and the global backend are never touched.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aerossl.errors import CheckpointError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_report"]

Series = tuple[np.ndarray, np.ndarray]  # (steps, values), sorted by step, finite values only

PLOT_DIR = "plots"
MAX_ANNOTATED_CLASSES = 25
DPI = 110
NUMERIC = re.compile(r"[\d,.%]+")
SPLITS = ("labeled", "unlabeled", "test")
KNOWN_TRAIN_KEYS = ("lr", "mask_rate", "pseudo_acc")
# multi-label runs: test metrics and per-entry pseudo-label statistics (multilabel_fixmatch)
MULTILABEL_TEST_KEYS = {"map_macro": "macro mAP", "map_micro": "micro mAP",
                        "f1_macro": "macro F1 @0.5", "f1_micro": "micro F1 @0.5",
                        "acc": "exact match"}
PSEUDO_LABEL_KEYS = {"mask_rate": "mask rate (accepted)", "pseudo_acc": "pseudo-label accuracy",
                     "pos_rate": "accepted as positive", "neg_rate": "accepted as negative",
                     "pseudo_precision_pos": "precision of positives",
                     "pseudo_precision_neg": "precision of negatives"}
STYLE = {
    "font.size": 9,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "savefig.bbox": "tight",
}


# --------------------------------------------------------------------------- reading inputs


PSEUDO_LABEL_GRID = "pseudo_label_errors.png"
"""Grid of the most confident wrong pseudo-labels, drawn by the engine (it has the images)."""


@dataclass
class Metrics:
    """Per-split numeric series parsed from ``metrics.jsonl``."""

    train: dict[str, Series] = field(default_factory=dict)
    test: dict[str, Series] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _is_number(value: Any) -> bool:
    """True for int/float values (not bools)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
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


def _read_metrics(path: Path) -> Metrics:
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
            if not isinstance(row, dict) or not _is_number(row.get("step")):
                bad_lines.append(lineno)
                continue
            step = int(row["step"])
            split = "test" if row.get("split") == "test" else "train"
            for key, value in row.items():
                if key in ("step", "split") or not _is_number(value):
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


def _count_lines(path: Path) -> int | None:
    """Number of entries (non-empty, non-comment lines) in a split file, or None if missing."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line.strip() and not line.startswith("#"))


# --------------------------------------------------------------------------- plotting helpers


@contextmanager
def _figure(path: Path, width: float, height: float) -> Iterator[Figure]:
    """Yield a standalone Agg figure with the report style and save it to ``path`` on exit."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(fig)
        yield fig
        fig.savefig(path, format="png")


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average; edges average over the points available."""
    if window <= 1 or values.size < 3:
        return values
    csum = np.concatenate(([0.0], np.cumsum(values)))
    idx = np.arange(values.size)
    lo = np.maximum(idx - window // 2, 0)
    hi = np.minimum(idx + window - window // 2, values.size)
    return (csum[hi] - csum[lo]) / (hi - lo)


def _smooth_window(n: int) -> int:
    """Moving-average window for a series of ``n`` points (1 = no smoothing)."""
    return max(1, min(n // 20, 200))


def _plot_smoothed(ax: Any, series: Series, label: str, color: str) -> None:
    """Draw a faint raw line plus its moving average."""
    steps, values = series
    window = _smooth_window(values.size)
    if window > 1:
        ax.plot(steps, values, color=color, alpha=0.2, linewidth=0.8)
        label = f"{label} (avg {window})"
    ax.plot(steps, _smooth(values, window), color=color, linewidth=1.5, label=label)


def _legend(ax: Any) -> None:
    """Legend outside the axes, on the right, so it never hides a line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _color(index: int) -> str:
    """The index-th colour of matplotlib's default cycle."""
    return f"C{index % 10}"


# --------------------------------------------------------------------------- plots


def _plot_test_accuracy(test: dict[str, Series], path: Path) -> bool:
    """Test accuracy (and non-EMA ``acc_raw``) in % over steps."""
    lines = [
        (key, label)
        for key, label in (("acc", "test acc"), ("acc_raw", "test acc (raw)"))
        if key in test
    ]
    if not lines:
        return False
    with _figure(path, 8, 3.6) as fig:
        ax = fig.subplots()
        for index, (key, label) in enumerate(lines):
            steps, values = test[key]
            ax.plot(steps, values * 100, marker="o", markersize=3, color=_color(index), label=label)
        best = int(np.argmax(test["acc"][1])) if "acc" in test else None
        if best is not None:
            steps, values = test["acc"]
            ax.scatter(
                [steps[best]],
                [values[best] * 100],
                s=60,
                facecolors="none",
                edgecolors="C3",
                zorder=3,
                label=f"best {values[best]:.2%}",
            )
        ax.set(xlabel="step", ylabel="accuracy (%)", title="Test accuracy")
        _legend(ax)
    return True


def _plot_losses(train: dict[str, Series], test: dict[str, Series], path: Path) -> bool:
    """Every train key starting with ``loss`` (smoothed + faint raw), plus the test loss."""
    keys = sorted(key for key in train if key.startswith("loss"))
    if not keys:
        return False
    with _figure(path, 8, 3.6) as fig:
        ax = fig.subplots()
        for index, key in enumerate(keys):
            _plot_smoothed(ax, train[key], key, _color(index))
        if "loss" in test:
            steps, values = test["loss"]
            ax.plot(
                steps,
                values,
                color="black",
                linestyle="--",
                marker=".",
                linewidth=1,
                label="test loss",
            )
        ax.set(xlabel="step", ylabel="loss", title="Losses")
        _legend(ax)
    return True


def _plot_lr(train: dict[str, Series], path: Path) -> bool:
    """Learning rate over steps."""
    if "lr" not in train:
        return False
    with _figure(path, 8, 2.6) as fig:
        ax = fig.subplots()
        ax.plot(*train["lr"], color="C4")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set(xlabel="step", ylabel="lr", title="Learning rate")
    return True


def _plot_pseudo_labels(train: dict[str, Series], path: Path) -> bool:
    """Mask rate and accuracy of accepted pseudo-labels (multi-label: also the acceptance
    rates and precision of positives and negatives), in %, on one plot."""
    keys = [key for key in PSEUDO_LABEL_KEYS if key in train]
    if not keys:
        return False
    with _figure(path, 8, 3.2) as fig:
        ax = fig.subplots()
        for index, key in enumerate(keys):
            steps, values = train[key]
            _plot_smoothed(ax, (steps, values * 100), PSEUDO_LABEL_KEYS[key], _color(index + 1))
        ax.set(xlabel="step", ylabel="%", title="Pseudo-labels", ylim=(-2, 102))
        _legend(ax)
    return True


def _plot_test_multilabel(test: dict[str, Series], path: Path) -> bool:
    """Multi-label test metrics in % over steps; the best macro mAP circled."""
    keys = [key for key in MULTILABEL_TEST_KEYS if key in test]
    if "map_macro" not in keys:
        return False
    with _figure(path, 8, 3.6) as fig:
        ax = fig.subplots()
        for index, key in enumerate(keys):
            steps, values = test[key]
            ax.plot(steps, values * 100, marker="o", markersize=3, color=_color(index),
                    label=MULTILABEL_TEST_KEYS[key], linestyle="-" if index < 2 else ":")
        steps, values = test["map_macro"]
        best = int(np.argmax(values))
        ax.scatter([steps[best]], [values[best] * 100], s=60, facecolors="none",
                   edgecolors="C3", zorder=3, label=f"best macro mAP {values[best]:.2%}")
        ax.set(xlabel="step", ylabel="%", title="Test mAP and F1 (multi-label)")
        _legend(ax)
    return True


def _plot_metric(key: str, series: Series, path: Path) -> bool:
    """One small plot for any other numeric train key."""
    with _figure(path, 4, 2.6) as fig:
        ax = fig.subplots()
        _plot_smoothed(ax, series, key, "C0")
        ax.set(xlabel="step", title=key)
    return True


def _plot_per_class(
    classes: Sequence[str], accuracy: Sequence[float], path: Path, name: str = "accuracy"
) -> bool:
    """Horizontal bar chart of per-class accuracy (or ``name``) in %, class order as in
    ``eval.json``."""
    values = np.array(accuracy, dtype=np.float64) * 100
    n = len(classes)
    with _figure(path, 8, max(2.0, 0.28 * n + 1.0)) as fig:
        ax = fig.subplots()
        ypos = np.arange(n)
        finite = np.nan_to_num(values, nan=0.0)
        ax.barh(ypos, finite, color=[_bar_color(v) for v in finite], height=0.7)
        ax.set_yticks(ypos, labels=list(classes), fontsize=8 if n <= 30 else 6)
        ax.set(
            ylim=(n - 0.5, -0.5),
            xlim=(0, 112),
            xlabel=f"{name} (%)",
            title=f"Per-class test {name}",
        )
        ax.grid(axis="y", visible=False)
        for y, value in zip(ypos, values, strict=True):
            text = "n/a" if math.isnan(value) else f"{value:.1f}"
            ax.text((0 if math.isnan(value) else value) + 1, y, text, va="center", fontsize=7)
    return True


def _bar_color(percent: float) -> str:
    """Red/orange/green by accuracy band."""
    return "#d62728" if percent < 50 else "#ff9f1c" if percent < 80 else "#2ca02c"


def _plot_confusion(classes: Sequence[str], matrix: np.ndarray, path: Path) -> bool:
    """Row-normalised confusion matrix heatmap; counts annotated for few classes."""
    n = matrix.shape[0]
    totals = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = float(np.clip(0.3 * n + 3.0, 5.0, 11.0))
    with _figure(path, side + 1.2, side) as fig:
        ax = fig.subplots()
        image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        fontsize = 8 if n <= MAX_ANNOTATED_CLASSES else 7
        ticks = np.arange(n)
        ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right", fontsize=fontsize)
        ax.set_yticks(ticks, labels=list(classes), fontsize=fontsize)
        ax.grid(False)
        ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised)")
        if n <= MAX_ANNOTATED_CLASSES:
            for (row, col), count in np.ndenumerate(matrix):
                if count:
                    color = "white" if norm[row, col] > 0.5 else "black"
                    ax.text(
                        col, row, str(int(count)), ha="center", va="center", fontsize=7, color=color
                    )
    return True


def plot_image_grid(
    images: np.ndarray, captions: Sequence[str], path: Path, columns: int = 8
) -> None:
    """Draw uint8 images (N, C, H, W; the first three channels shown) with captions."""
    n = len(images)
    cols = min(columns, max(n, 1))
    rows = max(1, -(-n // cols))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _figure(path, 1.6 * cols, 1.9 * rows) as fig:
        for i in range(rows * cols):
            ax = fig.add_subplot(rows, cols, i + 1)
            ax.axis("off")
            if i < n:
                img = np.asarray(images[i])
                img = img[:3] if img.shape[0] >= 3 else img[:1].repeat(3, axis=0)
                ax.imshow(np.transpose(img, (1, 2, 0)), interpolation="nearest")
                ax.set_title(captions[i], fontsize=7)


# --------------------------------------------------------------------------- report model


@dataclass
class Section:
    """One report section: optional table, plots, notes and preformatted text."""

    title: str
    table: list[list[str]] | None = None  # first row is the header
    plots: list[Path] = field(default_factory=list)
    small: bool = False  # lay plots out in a grid
    notes: list[str] = field(default_factory=list)
    pre: str | None = None
    warn: bool = False  # render notes as warnings


def _pct(value: Any) -> str:
    """Format a 0..1 fraction as a percentage, or an em dash."""
    return f"{value:.2%}" if _is_number(value) and math.isfinite(value) else "—"


def _text(value: Any, fmt: str = "{}") -> str:
    """Format a value, or an em dash when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def _is_multilabel(summary: dict[str, Any], evaluation: dict[str, Any], metrics: Metrics) -> bool:
    """True for a multi-label run (sigmoid outputs, mAP and F1)."""
    return ("multilabel" in (summary.get("task"), evaluation.get("task"))
            or "map_macro" in metrics.test)


def _header_stats(
    summary: dict[str, Any], metrics: Metrics, evaluation: dict[str, Any]
) -> list[list[str]]:
    """Key numbers for the header; falls back to metrics/eval where summary lacks them.

    ``final_acc`` / ``best_acc`` of summary.json hold the run's selection metric: accuracy, or
    macro mAP for a multi-label run (whose header also shows micro mAP and F1).
    """
    multilabel = _is_multilabel(summary, evaluation, metrics)
    key, name = ("map_macro", "macro mAP") if multilabel else ("acc", "test acc")
    acc = metrics.test.get(key)
    final_acc = summary.get("final_acc")
    best_acc, best_step = summary.get("best_acc"), summary.get("best_step")
    if acc is not None:
        final_acc = final_acc if final_acc is not None else acc[1][-1]
        if best_acc is None:
            best = int(np.argmax(acc[1]))
            best_acc, best_step = acc[1][best], int(acc[0][best])
    if final_acc is None:
        final_acc = evaluation.get("map_macro" if multilabel else "accuracy")
    steps = summary.get("steps")
    if steps is None:
        last = [int(s[0][-1]) for s in (*metrics.train.values(), *metrics.test.values())]
        steps = max(last) if last else None
    best = _pct(best_acc) + (f" @ step {best_step}" if _is_number(best_step) else "")
    extra = []
    if multilabel:
        final = summary.get("final_metrics") or evaluation
        extra = [[MULTILABEL_TEST_KEYS[k], _pct(final.get(k))]
                 for k in ("map_micro", "f1_macro", "f1_micro")]
    return [
        [f"final {name}", _pct(final_acc)],
        [f"best {name}", best],
        *extra,
        ["steps", _text(steps)],
        ["minutes", _text(summary.get("minutes"), "{:.1f}")],
        ["model", _text(summary.get("model"))],
        ["image size", _text(summary.get("image_size"))],
        ["seed", _text(summary.get("seed"))],
    ]


def _split_section(run_dir: Path, summary: dict[str, Any]) -> Section | None:
    """Image counts per split, from ``split/*.txt`` or else ``summary.json``."""
    counts: dict[str, tuple[int, str]] = {}
    for name in SPLITS:
        lines = _count_lines(run_dir / "split" / f"{name}.txt")
        if lines is not None:
            counts[name] = (lines, f"split/{name}.txt")
        elif _is_number(summary.get(f"num_{name}")):
            counts[name] = (int(summary[f"num_{name}"]), "summary.json")
    if not counts:
        return None
    total = sum(count for count, _ in counts.values())
    table = [["split", "images", "share", "source"]]
    for name, (count, source) in counts.items():
        share = f"{count / total:.1%}" if total else "—"
        table.append([name, f"{count:,}", share, source])
    section = Section("Data split", table=table)
    classes = summary.get("classes")
    if isinstance(classes, list) and classes:
        section.notes.append(f"{len(classes)} classes: " + ", ".join(map(str, classes)))
    return section


def _eval_arrays(
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


# --------------------------------------------------------------------------- building


def _build_sections(run_dir: Path, plot_dir: Path) -> tuple[str, list[list[str]], list[Section]]:
    """Read the run folder, draw the plots; returns (title, header stats, sections)."""
    notes: list[str] = []
    summary = _read_json(run_dir / "summary.json", notes) or {}
    evaluation = _read_json(run_dir / "eval.json", notes) or {}
    metrics = _read_metrics(run_dir / "metrics.jsonl")
    notes += metrics.notes
    title = f"{_text(summary.get('algorithm'))} on {_text(summary.get('dataset'))}"
    stats = _header_stats(summary, metrics, evaluation)
    sections: list[Section] = []

    split = _split_section(run_dir, summary)
    if split:
        sections.append(split)

    def add(title: str, name: str, draw: Callable[[Path], bool]) -> None:
        path = plot_dir / name
        if draw(path):
            sections.append(Section(title, plots=[path]))

    train, test = metrics.train, metrics.test
    multilabel = _is_multilabel(summary, evaluation, metrics)
    if multilabel:
        add("Test mAP and F1", "test_map.png", lambda p: _plot_test_multilabel(test, p))
    else:
        add("Test accuracy", "test_accuracy.png", lambda p: _plot_test_accuracy(test, p))
    add("Training losses", "losses.png", lambda p: _plot_losses(train, test, p))
    add("Learning rate", "lr.png", lambda p: _plot_lr(train, p))
    add("Pseudo-labels", "pseudo_labels.png", lambda p: _plot_pseudo_labels(train, p))

    others = sorted(k for k in train if not k.startswith("loss") and k not in KNOWN_TRAIN_KEYS
                    and k not in PSEUDO_LABEL_KEYS)
    if others:
        section = Section("Other training metrics", small=True)
        for key in others:
            path = plot_dir / _metric_filename(key, section.plots)
            if _plot_metric(key, train[key], path):
                section.plots.append(path)
        sections.append(section)

    if evaluation and multilabel:
        section = _multilabel_section(evaluation, plot_dir / "per_class_ap.png", notes)
        if section:
            sections.append(section)
    elif evaluation:
        classes, accuracy, matrix = _eval_arrays(evaluation, notes)
        step = f" (step {evaluation['step']})" if _is_number(evaluation.get("step")) else ""
        if accuracy is not None and len(accuracy):
            add(
                f"Per-class accuracy{step}",
                "per_class_accuracy.png",
                lambda p: _plot_per_class(classes, accuracy, p),
            )
        if matrix is not None:
            add(
                f"Confusion matrix{step}",
                "confusion_matrix.png",
                lambda p: _plot_confusion(classes, matrix, p),
            )

    grid = plot_dir / PSEUDO_LABEL_GRID
    if grid.is_file():
        sections.append(Section(
            "Most confident wrong pseudo-labels", plots=[grid],
            notes=["Unlabelled training images whose prediction by the final model is wrong, "
                   "most confident first (predicted class, confidence, true class)."]))

    config = run_dir / "config.yaml"
    if config.is_file():
        sections.append(Section("Config", pre=config.read_text(encoding="utf-8", errors="replace")))
    if notes:
        sections.insert(0, Section("Notes", notes=notes, warn=True))
    return title, stats, sections


def _multilabel_section(
    evaluation: dict[str, Any], path: Path, notes: list[str]
) -> Section | None:
    """Per-class average precision, F1 and positives of a multi-label eval.json."""
    try:
        ap = np.array([np.nan if v is None else v for v in evaluation.get("per_class_ap") or []],
                      dtype=np.float64)
        f1 = [np.nan if v is None else float(v) for v in evaluation.get("per_class_f1") or []]
        positives = list(evaluation.get("per_class_positives") or [])
    except (TypeError, ValueError):
        notes.append("eval.json: per_class_ap/per_class_f1 are not numeric; skipped.")
        return None
    if not len(ap):
        return None
    classes = evaluation.get("classes")
    if not isinstance(classes, list) or len(classes) != len(ap):
        classes = [f"class {i}" for i in range(len(ap))]
    classes = [str(c) for c in classes]
    step = f" (step {evaluation['step']})" if _is_number(evaluation.get("step")) else ""
    table = [["label", "test positives", "AP", "F1 @0.5"]]
    for i, name in enumerate(classes):
        table.append([name, _text(positives[i] if i < len(positives) else None),
                      _pct(ap[i]), _pct(f1[i] if i < len(f1) else None)])
    section = Section(f"Per-label average precision{step}", table=table)
    section.notes.append("Macro mAP and macro F1 average over the labels with test positives; "
                         "AP is undefined (—) for a label without any.")
    if _plot_per_class(classes, ap, path, name="average precision"):
        section.plots.append(path)
    return section


def _metric_filename(key: str, taken: Sequence[Path]) -> str:
    """A safe, unique PNG name for a metric key (``loss/sup`` -> ``metric_loss_sup.png``)."""
    stem = "metric_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "value")
    names = {path.name for path in taken}
    name, index = f"{stem}.png", 2
    while name in names:
        name, index = f"{stem}_{index}.png", index + 1
    return name


# --------------------------------------------------------------------------- rendering

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
 background:#f4f6f9;margin:0;line-height:1.45}
main{max-width:1080px;margin:0 auto;padding:24px}
header{background:#1f3b57;color:#fff;border-radius:10px;padding:18px 24px;margin-bottom:18px}
header h1{margin:0 0 12px;font-size:1.6em}
.stats{display:flex;flex-wrap:wrap;gap:10px}
.stat{background:rgba(255,255,255,.12);border-radius:8px;padding:6px 12px;min-width:90px}
.stat .k{font-size:.75em;text-transform:uppercase;letter-spacing:.05em;opacity:.8}
.stat .v{font-size:1.15em;font-weight:600}
section{background:#fff;border-radius:10px;padding:14px 20px;margin-bottom:16px;
 box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:1.15em;margin:0 0 10px;color:#1f3b57}
img{max-width:100%;height:auto;display:block;margin:0 auto}
.grid img{width:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
table{border-collapse:collapse;margin-bottom:8px}
th,td{padding:4px 14px;border-bottom:1px solid #e3e7ed;text-align:left}
th{background:#f0f3f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;border:1px solid #e3e7ed;border-radius:6px;padding:12px;
 overflow:auto;font-size:.85em;max-height:600px}
ul.notes{margin:0;padding-left:20px;color:#8a4b00}
p.note{margin:4px 0;color:#4a5565;font-size:.92em}
"""


def _data_uri(path: Path) -> str:
    """A PNG file as a base64 data URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(rows: list[list[str]]) -> str:
    """An HTML table; the first row is the header, numeric-looking cells right-aligned."""
    esc = html.escape
    head = "".join(f"<th>{esc(cell)}</th>" for cell in rows[0])
    cells = (
        "".join(f'<td class="{"num" if NUMERIC.fullmatch(c) else ""}">{esc(c)}</td>' for c in row)
        for row in rows[1:]
    )
    body = "".join(f"<tr>{row}</tr>" for row in cells)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_section(section: Section) -> str:
    """One <section> element."""
    esc = html.escape
    parts = [f"<h2>{esc(section.title)}</h2>"]
    if section.table:
        parts.append(_html_table(section.table))
    if section.warn:
        items = "".join(f"<li>{esc(note)}</li>" for note in section.notes)
        parts.append(f'<ul class="notes">{items}</ul>')
    else:
        parts += [f'<p class="note">{esc(note)}</p>' for note in section.notes]
    if section.plots:
        images = "".join(f'<img src="{_data_uri(p)}" alt="{esc(p.stem)}">' for p in section.plots)
        parts.append(f'<div class="grid">{images}</div>' if section.small else images)
    if section.pre is not None:
        parts.append(f"<pre>{esc(section.pre)}</pre>")
    return "<section>" + "".join(parts) + "</section>"


def _render_html(title: str, stats: list[list[str]], sections: list[Section]) -> str:
    """The complete self-contained HTML page."""
    esc = html.escape
    tiles = "".join(
        f'<div class="stat"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>'
        for k, v in stats
    )
    body = "".join(_html_section(section) for section in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} — aerossl run report</title><style>{CSS}</style></head>"
        f'<body><main><header><h1>{esc(title)}</h1><div class="stats">{tiles}</div></header>'
        f"{body}</main></body></html>\n"
    )


def _md_cell(text: str) -> str:
    """Escape a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[list[str]]) -> list[str]:
    """A Markdown table; the first row is the header."""
    lines = ["| " + " | ".join(_md_cell(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows[1:]]
    return lines


def _render_markdown(
    title: str, stats: list[list[str]], sections: list[Section], run_dir: Path
) -> str:
    """The Markdown report, linking the PNGs relative to the run folder."""
    lines = [f"# {title}", "", *_md_table([list(row) for row in zip(*stats, strict=True)]), ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.table:
            lines += [*_md_table(section.table), ""]
        lines += [f"- {note}" for note in section.notes] + ([""] if section.notes else [])
        for path in section.plots:
            lines += [f"![{path.stem}]({path.relative_to(run_dir).as_posix()})", ""]
        if section.pre is not None:
            longest = max((len(m) for m in re.findall(r"`+", section.pre)), default=0)
            fence = "`" * max(3, longest + 1)
            lines += [f"{fence}yaml", section.pre.rstrip("\n"), fence, ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def write_report(run_dir: str | Path) -> Path:
    """Write ``plots/*.png``, ``report.md`` and a self-contained ``report.html`` for a run.

    Every input file is optional; missing ones drop their sections. Returns the HTML path.
    Raises ``CheckpointError`` when ``run_dir`` is not a folder or cannot be written.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    plot_dir = run_dir / PLOT_DIR
    try:
        plot_dir.mkdir(exist_ok=True)
        title, stats, sections = _build_sections(run_dir, plot_dir)
        (run_dir / "report.md").write_text(
            _render_markdown(title, stats, sections, run_dir), encoding="utf-8"
        )
        html_path = run_dir / "report.html"
        html_path.write_text(_render_html(title, stats, sections), encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"cannot write the report in {run_dir}: {exc}") from exc
    return html_path
