"""SoftMatch: addressing the quantity-quality trade-off (Chen et al., ICLR 2023), on FixMatch.

Every pseudo-label is kept, weighted by a truncated Gaussian of its confidence whose mean and
variance follow the weak predictions q (EMA, momentum m); the guesses are first aligned to a
uniform class distribution (uniform alignment, UA):

    q      = normalise(p(u_weak) * (1/C) / mean_run p(u_weak))          (UA)
    c      = max_k q_k,   mu <- m mu + (1 - m) mean(c),   var <- m var + (1 - m) var(c)
    w(c)   = exp(-(c - mu)^2 / (2 var / n_sigma^2)) if c < mu else 1
    loss   = CE(x, y) + lambda_u * mean(w(c) * CE(u_strong, argmax q))

This is :class:`~aerossl.algorithms.fixmatch.FixMatch` with the ``softmatch`` selector
(:class:`~aerossl.algorithms.selectors.SoftWeights`) and ``dist_align`` on by default.
"""

from __future__ import annotations

from pydantic import Field

from aerossl.algorithms.base import register_algorithm
from aerossl.algorithms.fixmatch import FixMatch, WeakStrongParams

__all__ = ["SoftMatch"]


@register_algorithm("softmatch")
class SoftMatch(FixMatch):
    """FixMatch whose pseudo-labels are weighted by a truncated Gaussian of their confidence."""

    selector = "softmatch"

    class Params(WeakStrongParams):
        dist_align: bool = Field(
            True, description="uniform alignment of the guesses (SoftMatch's UA)"
        )
        ema_momentum: float = Field(
            0.999, ge=0, lt=1, description="momentum m of the confidence mean and variance"
        )
        n_sigma: float = Field(
            2.0, gt=0, description="width of the Gaussian in standard deviations"
        )
