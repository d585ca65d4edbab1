"""AdaMatch (Berthelot et al., ICLR 2022), its semi-supervised form, on FixMatch.

The labelled images' weak views calibrate the unlabelled ones within each batch: guesses are
aligned to the running class distribution of the labelled predictions (relative distribution
alignment), and the confidence threshold is relative to the labelled confidence:

    q    = normalise(p(u_weak) * mean_run p(x_weak) / mean_run p(u_weak))
    tau' = tau * mean_b max_k p(x_b)_k
    loss = CE(x, y) + lambda_u * mean(1[max q >= tau'] * CE(u_strong, argmax q))

This is :class:`~aerossl.algorithms.fixmatch.FixMatch` with the ``relative`` selector
(:class:`~aerossl.algorithms.selectors.RelativeThreshold`) and ``dist_align`` on with
``dist_align_target: labeled``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from aerossl.algorithms.base import register_algorithm
from aerossl.algorithms.fixmatch import FixMatch, WeakStrongParams

__all__ = ["AdaMatch"]


@register_algorithm("adamatch")
class AdaMatch(FixMatch):
    """FixMatch calibrated by the labelled batch: relative threshold and alignment."""

    selector = "relative"

    class Params(WeakStrongParams):
        threshold: float = Field(
            0.9, ge=0, le=1, description="relative confidence threshold tau (of the labelled "
            "mean confidence)")
        dist_align: bool = Field(True, description="relative distribution alignment")
        dist_align_target: Literal["uniform", "labeled"] = Field(
            "labeled", description="alignment target: the labelled predictions' running mean")

    def observe_labeled(self, logits_x: Tensor) -> None:
        """The labelled weak views set the threshold and the alignment target."""
        probs_x = torch.softmax(logits_x.detach().float() / self.p.temperature, dim=1)
        self.aligner.observe_labeled(probs_x)
        self.thresholds.observe_labeled(probs_x)
