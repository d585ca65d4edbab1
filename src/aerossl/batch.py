"""The data-flow types between the data stage, the algorithms and the engine.

The data stage builds a :class:`Batch` of the views a :class:`ViewSpec` asks for; an algorithm
turns it into a :class:`StepOutput` at a :class:`StepContext`. This module imports neither the
data stage, the algorithms nor the engine, so each of them can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class ViewSpec:
    """Which augmentation pipeline produces each named view of the labelled/unlabelled batch."""

    labeled: dict[str, str]
    unlabeled: dict[str, str] = field(default_factory=dict)

    def pipelines(self) -> set[str]:
        """Names of every pipeline these views use."""
        return set(self.labeled.values()) | set(self.unlabeled.values())


@dataclass
class Batch:
    """One training step's data, already augmented and on the training device.

    Labels are class indices ``(B,)``, or float multi-hot ``(B, C)`` for a multi-label task,
    and exist for the labelled images only: the hidden labels of the unlabelled images stay with
    the engine, which scores the pseudo-labels a step returns (:class:`StepOutput`).
    """

    labeled: dict[str, Tensor]
    labels: Tensor
    unlabeled: dict[str, Tensor] = field(default_factory=dict)
    unlabeled_index: Tensor | None = None  # dataset indices of the unlabelled images (int64)
    # encoded spatiotemporal metadata (B, meta_dim) float32, when data.metadata is set
    labeled_meta: Tensor | None = None
    unlabeled_meta: Tensor | None = None


@dataclass(frozen=True)
class StepContext:
    """Where training stands, for ramp-ups and annealing."""

    step: int
    total_steps: int

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.total_steps))


@dataclass
class StepOutput:
    """The loss to minimise and the values to log (scalars; averaged by the engine).

    A pseudo-labelling method also returns, per unlabelled image of the batch, its
    ``pseudo_labels`` (``(B_u,)`` class indices, or ``(B_u, C)`` binary multi-hot for a
    multi-label task) and their ``mask`` (``(B_u,)`` or ``(B_u, C)`` float weights, 0 for
    rejected ones); ``predictions`` names other per-image class predictions (``(B_u,)``). The
    engine logs the mask rate and, against the hidden labels it keeps, the pseudo-labels'
    accuracy (``mask_rate``, ``pseudo_acc``, ...) and each prediction's accuracy under its name.
    """

    loss: Tensor
    log: dict[str, Tensor | float] = field(default_factory=dict)
    pseudo_labels: Tensor | None = None
    mask: Tensor | None = None
    predictions: dict[str, Tensor] = field(default_factory=dict)
