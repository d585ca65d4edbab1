"""FlexMatch: curriculum pseudo labelling (Zhang et al., NeurIPS 2021), on FixMatch.

Each unlabelled image remembers its latest prediction whose confidence passed ``tau``. The
learning effect of class c is the number of images remembered as c, normalised (warm-up
variant) by the largest of those counts and the number of images not yet remembered:

    sigma_c = #{i : yhat_i = c},  beta_c = sigma_c / max(max_c' sigma_c', N - sum_c' sigma_c')
    T_c = tau * M(beta_c),  M(x) = x / (2 - x)   (convex mapping)
    loss = CE(x_weak, y) + lambda_u * mean(1[max p(u_weak) >= T_argmax] * CE(u_strong, yhat))

Without warm-up the normaliser is max_c sigma_c. N counts the unlabelled images seen so far
(an image enters the count the first time it is drawn), which after one pass over the
unlabelled set is the unlabelled set's size, as in the reference code.

This is :class:`~aerossl.algorithms.fixmatch.FixMatch` with the ``flexmatch`` selector
(:class:`~aerossl.algorithms.selectors.FlexThresholds`).
"""

from __future__ import annotations

from pydantic import Field

from aerossl.algorithms.base import register_algorithm
from aerossl.algorithms.fixmatch import FixMatch, WeakStrongParams
from aerossl.algorithms.selectors import FlexThresholds, convex_threshold, learning_effect

__all__ = ["FlexMatch", "FlexThresholds", "convex_threshold", "learning_effect"]


@register_algorithm("flexmatch")
class FlexMatch(FixMatch):
    """FixMatch with class-wise thresholds that follow each class's learning status."""

    selector = "flexmatch"

    class Params(WeakStrongParams):
        threshold: float = Field(0.95, ge=0, le=1, description="upper threshold tau")
        threshold_warmup: bool = Field(
            True, description="count unused images in the normaliser (FlexMatch's warm-up)"
        )
