"""What a run predicts: one class per image (``multiclass``) or a set of labels (``multilabel``).

A :class:`Task` is the one place that knows the difference: how labels become training targets,
the supervised loss (softmax cross-entropy or sigmoid binary cross-entropy), probabilities, and
the evaluation metrics with the one that selects the "best" checkpoint. Algorithms and the
engine call the task instead of branching on it.

Multi-label metrics (all on sigmoid probabilities):

- average precision of a class: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score
  thresholds, highest first (precision ``P_n`` and recall ``R_n`` of the images scoring at
  least the n-th threshold; as scikit-learn's ``average_precision_score``);
- macro mAP: the mean AP over the classes with at least one positive in the evaluated set;
  micro mAP: the AP of all (image, class) entries pooled;
- F1 at threshold 0.5: per class ``2 TP / (2 TP + FP + FN)``; macro F1 averages it over the
  same classes as macro mAP; micro F1 pools the counts of all classes;
- exact match: the share of images whose predicted label set equals the true set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aerossl.errors import ConfigError

TASK_NAMES = ("multiclass", "multilabel")

#: Probability at or above which a label is predicted present (multi-label F1, exact match).
DECISION_THRESHOLD = 0.5


@dataclass
class EvalResult:
    """Evaluation of one set of weights on one index set.

    ``accuracy`` is top-1 accuracy (multi-class) or exact-match accuracy (multi-label);
    ``metric`` names the value that selects the best checkpoint (``score``): ``acc`` or a key of
    ``metrics`` (``map_macro`` for multi-label). ``per_class`` holds per-class lists.
    """

    accuracy: float
    loss: float
    confusion: np.ndarray | None = None  # (true, predicted) counts; multi-class only
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, list[float]] = field(default_factory=dict)
    metric: str = "acc"
    task: str = "multiclass"

    @property
    def score(self) -> float:
        """Value of the selection metric (higher is better)."""
        return self.accuracy if self.metric == "acc" else self.metrics[self.metric]

    @property
    def per_class_accuracy(self) -> list[float]:
        """Recall of each class (multi-class only)."""
        if self.confusion is None:
            return []
        totals = self.confusion.sum(axis=1)
        return [float(c / t) if t else float("nan")
                for c, t in zip(np.diag(self.confusion), totals, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the format of eval.json)."""
        if self.task == "multiclass":
            return {
                "accuracy": self.accuracy,
                "loss": self.loss,
                "per_class_accuracy": self.per_class_accuracy,
                "confusion_matrix": self.confusion.tolist() if self.confusion is not None else [],
            }
        return {"task": self.task, "metric": self.metric, "accuracy": self.accuracy,
                "loss": self.loss, **self.metrics,
                **{f"per_class_{k}": v for k, v in self.per_class.items()}}


class Task:
    """Targets, loss, probabilities and metrics of one kind of labels."""

    name: ClassVar[str] = ""
    metric: ClassVar[str] = "acc"
    metric_label: ClassVar[str] = "accuracy"

    def targets(self, labels: Tensor, num_classes: int) -> Tensor:
        """Float ``(B, C)`` training targets from a batch of labels."""
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean supervised loss against ``(B, C)`` float targets."""
        raise NotImplementedError

    def smooth(self, targets: Tensor, eps: float) -> Tensor:
        """Label smoothing of ``(B, C)`` targets."""
        raise NotImplementedError

    def probs(self, logits: Tensor) -> Tensor:
        """Predicted probabilities."""
        raise NotImplementedError

    def evaluate(self, logits: Tensor, labels: Tensor) -> EvalResult:
        """Metrics of ``logits`` (float, CPU) against the dataset's labels for the same rows."""
        raise NotImplementedError


class MultiClass(Task):
    """One class per image: softmax, cross-entropy, accuracy and the confusion matrix."""

    name = "multiclass"

    def targets(self, labels: Tensor, num_classes: int) -> Tensor:
        return F.one_hot(labels, num_classes).float()

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return -(targets * torch.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()

    def smooth(self, targets: Tensor, eps: float) -> Tensor:
        return targets * (1 - eps) + eps / targets.shape[1]

    def probs(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits.float(), dim=1)

    def evaluate(self, logits: Tensor, labels: Tensor) -> EvalResult:
        num_classes = logits.shape[1]
        pred = logits.argmax(dim=1)
        confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2)
        return EvalResult(
            accuracy=float((pred == labels).float().mean()) if len(labels) else float("nan"),
            loss=float(F.cross_entropy(logits, labels)) if len(labels) else float("nan"),
            confusion=confusion.view(num_classes, num_classes).numpy(),
        )


class MultiLabel(Task):
    """A set of labels per image: independent sigmoids, binary cross-entropy, mAP and F1."""

    name = "multilabel"
    metric = "map_macro"
    metric_label = "macro mAP"

    def targets(self, labels: Tensor, num_classes: int) -> Tensor:
        return labels.float()

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())

    def smooth(self, targets: Tensor, eps: float) -> Tensor:
        return targets * (1 - eps) + eps / 2

    def probs(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits.float())

    def evaluate(self, logits: Tensor, labels: Tensor) -> EvalResult:
        if not len(labels):
            nan = float("nan")
            return EvalResult(nan, nan, metrics={}, metric=self.metric, task=self.name)
        y = labels.float()
        scores = self.probs(logits).numpy()
        truth = y.numpy() > 0.5
        metrics = multilabel_metrics(scores, truth)
        per_class = metrics.pop("per_class")
        return EvalResult(
            accuracy=metrics.pop("exact_match"),
            loss=float(self.loss(logits, y)),
            metrics=metrics,
            per_class=per_class,
            metric=self.metric,
            task=self.name,
        )


TASKS: dict[str, Task] = {"multiclass": MultiClass(), "multilabel": MultiLabel()}


def get_task(name: str) -> Task:
    """The task of that name (``multiclass`` or ``multilabel``)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}' (available: {', '.join(TASK_NAMES)})")
    return TASKS[name]


# --------------------------------------------------------------------------- metrics


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP of one class: ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (NaN without
    positives). Tied scores enter together, as in scikit-learn."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(truth, dtype=bool).ravel()
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], truth[order]
    tp = np.cumsum(t)
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last row of each tie block
    tp = tp[ends]
    precision = tp / (ends + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives and false negatives of boolean ``(N, C)``."""
    tp = (pred & truth).sum(axis=0)
    fp = (pred & ~truth).sum(axis=0)
    fn = (~pred & truth).sum(axis=0)
    return tp, fp, fn


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(np.shape(tp), dtype=np.float64),
                     where=denom > 0)


def multilabel_metrics(
    scores: np.ndarray, truth: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> dict[str, Any]:
    """Macro/micro mAP, macro/micro F1 at ``threshold``, exact match and per-class lists
    (``ap``, ``f1``, ``positives``) of probabilities ``scores`` against boolean ``truth``."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    positives = truth.sum(axis=0)
    present = positives > 0
    ap = np.array([average_precision(scores[:, c], truth[:, c])
                   for c in range(scores.shape[1])])
    pred = scores >= threshold
    tp, fp, fn = f1_counts(pred, truth)
    f1 = _f1(tp, fp, fn)
    nan = float("nan")
    return {
        "map_macro": float(ap[present].mean()) if present.any() else nan,
        "map_micro": average_precision(scores.ravel(), truth.ravel()),
        "f1_macro": float(f1[present].mean()) if present.any() else nan,
        "f1_micro": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "exact_match": float((pred == truth).all(axis=1).mean()),
        "per_class": {
            "ap": [float(v) for v in ap],
            "f1": [float(v) if p else nan for v, p in zip(f1, present, strict=True)],
            "positives": [int(v) for v in positives],
        },
    }
