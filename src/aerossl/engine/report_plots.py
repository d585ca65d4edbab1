"""The plots of a run report, drawn with matplotlib's Agg canvas on standalone ``Figure``
objects, so pyplot and the global backend are never touched."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Series = tuple[np.ndarray, np.ndarray]  # (steps, values), sorted by step, finite values only

MAX_ANNOTATED_CLASSES = 25
DPI = 110
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


def plot_smoothed(ax: Any, series: Series, label: str, color: str) -> None:
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


def plot_test_accuracy(test: dict[str, Series], path: Path) -> bool:
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


def plot_losses(train: dict[str, Series], test: dict[str, Series], path: Path) -> bool:
    """Every train key starting with ``loss`` (smoothed + faint raw), plus the test loss."""
    keys = sorted(key for key in train if key.startswith("loss"))
    if not keys:
        return False
    with _figure(path, 8, 3.6) as fig:
        ax = fig.subplots()
        for index, key in enumerate(keys):
            plot_smoothed(ax, train[key], key, _color(index))
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


def plot_lr(train: dict[str, Series], path: Path) -> bool:
    """Learning rate over steps."""
    if "lr" not in train:
        return False
    with _figure(path, 8, 2.6) as fig:
        ax = fig.subplots()
        ax.plot(*train["lr"], color="C4")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set(xlabel="step", ylabel="lr", title="Learning rate")
    return True


def plot_pseudo_labels(train: dict[str, Series], path: Path) -> bool:
    """Mask rate and accuracy of accepted pseudo-labels (multi-label: also the acceptance
    rates and precision of positives and negatives), in %, on one plot."""
    keys = [key for key in PSEUDO_LABEL_KEYS if key in train]
    if not keys:
        return False
    with _figure(path, 8, 3.2) as fig:
        ax = fig.subplots()
        for index, key in enumerate(keys):
            steps, values = train[key]
            plot_smoothed(ax, (steps, values * 100), PSEUDO_LABEL_KEYS[key], _color(index + 1))
        ax.set(xlabel="step", ylabel="%", title="Pseudo-labels", ylim=(-2, 102))
        _legend(ax)
    return True


def plot_test_multilabel(test: dict[str, Series], path: Path) -> bool:
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


def plot_metric(key: str, series: Series, path: Path) -> bool:
    """One small plot for any other numeric train key."""
    with _figure(path, 4, 2.6) as fig:
        ax = fig.subplots()
        plot_smoothed(ax, series, key, "C0")
        ax.set(xlabel="step", title=key)
    return True


def plot_per_class(
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


def plot_confusion(classes: Sequence[str], matrix: np.ndarray, path: Path) -> bool:
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
