"""What a run leaves in its folder besides checkpoints: its name, the result it reports,
eval.json and summary.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerossl.config import Config
from aerossl.engine.checkpoint import writing
from aerossl.engine.data import DataBundle
from aerossl.engine.evaluate import EvalResult


@dataclass
class RunResult:
    """What a finished run reports.

    ``final_acc`` and ``best_acc`` are the final and best test values of the selection metric
    ``metric``: accuracy (``acc``), or macro mAP (``map_macro``) for multi-label runs, whose
    other final test metrics (micro mAP, F1, exact match) are in ``metrics``.
    """

    run_dir: Path
    final_acc: float
    best_acc: float
    best_step: int
    steps: int
    minutes: float
    report: Path | None
    metric: str = "acc"
    metrics: dict[str, float] = field(default_factory=dict)
    bank_minutes: float = 0.0  # time this process spent filling the view bank

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        d = asdict(self)
        d["run_dir"], d["report"] = str(self.run_dir), str(self.report) if self.report else None
        return d


def new_run_dir(cfg: Config) -> Path:
    """``output_dir/name``, or ``name-2``, ``name-3``... if that folder is already used."""
    base = Path(cfg.output_dir) / cfg.name
    run_dir, k = base, 1
    while run_dir.exists() and any(run_dir.iterdir()):
        k += 1
        run_dir = base.with_name(f"{base.name}-{k}")
    return run_dir


def write_eval(run_dir: Path, result: EvalResult, step: int, classes: list[str]) -> None:
    """Write eval.json: accuracy, per-class accuracy and the confusion matrix (multi-label:
    macro/micro mAP and F1, exact match, per-class AP, F1 and positives)."""
    data = {"step": step, **result.to_dict(), "classes": classes}
    with writing(run_dir / "eval.json"):
        (run_dir / "eval.json").write_text(json.dumps(data, indent=2))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write summary.json: what the run was and what it reached."""
    with writing(run_dir / "summary.json"):
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def write_pseudo_label_errors(run_dir: Path, data: DataBundle,
                              predict: Callable[[np.ndarray], torch.Tensor], k: int = 24) -> None:
    """Draw the unlabelled images the final model labels wrongly with most confidence
    (``plots/``). The hidden labels are used here for inspection only, as in the logs."""
    from aerossl.engine.report import PSEUDO_LABEL_GRID, plot_image_grid

    if data.task.name != "multiclass":  # the grid shows one predicted class per image
        return
    idx = np.setdiff1d(data.split.unlabeled, data.split.labeled)
    if len(idx) == 0:
        return
    logits = predict(idx)
    confidence, pred = logits.softmax(dim=1).max(dim=1)
    truth = data.labels.cpu()[torch.as_tensor(idx)]
    wrong = torch.nonzero(pred != truth).flatten()
    top = wrong[confidence[wrong].argsort(descending=True)][:k]
    if len(top) == 0:
        return
    names = data.classes
    captions = [f"{names[pred[i]]} {confidence[i]:.0%}\n(true: {names[truth[i]]})"
                for i in top.tolist()]
    images = data.images[torch.as_tensor(idx[top.numpy()])].numpy()
    with writing(run_dir / "plots"):
        plot_image_grid(images, captions, run_dir / "plots" / PSEUDO_LABEL_GRID)
