"""Run report: plots, ``report.md`` and one self-contained ``report.html`` for a run folder.

The report reads what the training engine wrote (``metrics.jsonl``, ``summary.json``,
``eval.json``, ``config.yaml``, ``split/*.txt``); every file is optional and a section whose
input is missing or unreadable is left out. The sections are built here, drawn by
:mod:`aerossl.engine.report_plots` and rendered by the Jinja2 templates
``aerossl/templates/report.html.j2`` and ``report.md.j2``.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aerossl.engine.report_inputs import (
    Metrics,
    count_lines,
    eval_arrays,
    is_number,
    read_json,
    read_metrics,
)
from aerossl.engine.report_plots import (
    MULTILABEL_TEST_KEYS,
    PSEUDO_LABEL_KEYS,
    plot_confusion,
    plot_image_grid,
    plot_losses,
    plot_lr,
    plot_metric,
    plot_per_class,
    plot_pseudo_labels,
    plot_test_accuracy,
    plot_test_multilabel,
)
from aerossl.errors import CheckpointError

__all__ = ["PSEUDO_LABEL_GRID", "plot_image_grid", "write_report"]

PLOT_DIR = "plots"
NUMERIC = re.compile(r"[\d,.%]+")
SPLITS = ("labeled", "unlabeled", "test")
KNOWN_TRAIN_KEYS = ("lr", "mask_rate", "pseudo_acc")

PSEUDO_LABEL_GRID = "pseudo_label_errors.png"
"""Grid of the most confident wrong pseudo-labels, drawn by the engine (it has the images)."""


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
    return f"{value:.2%}" if is_number(value) and math.isfinite(value) else "—"


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
    best = _pct(best_acc) + (f" @ step {best_step}" if is_number(best_step) else "")
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
        lines = count_lines(run_dir / "split" / f"{name}.txt")
        if lines is not None:
            counts[name] = (lines, f"split/{name}.txt")
        elif is_number(summary.get(f"num_{name}")):
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


# --------------------------------------------------------------------------- building


def _build_sections(run_dir: Path, plot_dir: Path) -> tuple[str, list[list[str]], list[Section]]:
    """Read the run folder, draw the plots; returns (title, header stats, sections)."""
    notes: list[str] = []
    summary = read_json(run_dir / "summary.json", notes) or {}
    evaluation = read_json(run_dir / "eval.json", notes) or {}
    metrics = read_metrics(run_dir / "metrics.jsonl")
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
        add("Test mAP and F1", "test_map.png", lambda p: plot_test_multilabel(test, p))
    else:
        add("Test accuracy", "test_accuracy.png", lambda p: plot_test_accuracy(test, p))
    add("Training losses", "losses.png", lambda p: plot_losses(train, test, p))
    add("Learning rate", "lr.png", lambda p: plot_lr(train, p))
    add("Pseudo-labels", "pseudo_labels.png", lambda p: plot_pseudo_labels(train, p))

    others = sorted(k for k in train if not k.startswith("loss") and k not in KNOWN_TRAIN_KEYS
                    and k not in PSEUDO_LABEL_KEYS)
    if others:
        section = Section("Other training metrics", small=True)
        for key in others:
            path = plot_dir / _metric_filename(key, section.plots)
            if plot_metric(key, train[key], path):
                section.plots.append(path)
        sections.append(section)

    if evaluation and multilabel:
        section = _multilabel_section(evaluation, plot_dir / "per_class_ap.png", notes)
        if section:
            sections.append(section)
    elif evaluation:
        classes, accuracy, matrix = eval_arrays(evaluation, notes)
        step = f" (step {evaluation['step']})" if is_number(evaluation.get("step")) else ""
        if accuracy is not None and len(accuracy):
            add(
                f"Per-class accuracy{step}",
                "per_class_accuracy.png",
                lambda p: plot_per_class(classes, accuracy, p),
            )
        if matrix is not None:
            add(
                f"Confusion matrix{step}",
                "confusion_matrix.png",
                lambda p: plot_confusion(classes, matrix, p),
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
    step = f" (step {evaluation['step']})" if is_number(evaluation.get("step")) else ""
    table = [["label", "test positives", "AP", "F1 @0.5"]]
    for i, name in enumerate(classes):
        table.append([name, _text(positives[i] if i < len(positives) else None),
                      _pct(ap[i]), _pct(f1[i] if i < len(f1) else None)])
    section = Section(f"Per-label average precision{step}", table=table)
    section.notes.append("Macro mAP and macro F1 average over the labels with test positives; "
                         "AP is undefined (—) for a label without any.")
    if plot_per_class(classes, ap, path, name="average precision"):
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


def _data_uri(path: Path) -> str:
    """A PNG file as a base64 data URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _md_cell(text: str) -> str:
    """Escape a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    return "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)


def _render(template: str, **context: Any) -> str:
    """Render one of the package's report templates (HTML ones autoescaped)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aerossl", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(data_uri=_data_uri, md_cell=_md_cell, md_fence=_md_fence)
    env.tests["numeric"] = lambda cell: bool(NUMERIC.fullmatch(cell))
    return env.get_template(template).render(**context)


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
        context = {"title": title, "stats": stats, "sections": sections, "run_dir": run_dir}
        (run_dir / "report.md").write_text(_render("report.md.j2", **context), encoding="utf-8")
        html_path = run_dir / "report.html"
        html_path.write_text(_render("report.html.j2", **context), encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"cannot write the report in {run_dir}: {exc}") from exc
    return html_path
