"""FreeMatch: self-adaptive thresholding (Wang et al., ICLR 2023), on FixMatch.

Exponential moving averages (momentum m) over the weak views' predictions q of each batch:

    tau   <- m tau   + (1 - m) mean_b max_c q_bc        (global threshold, init 1/C)
    p~_c  <- m p~_c  + (1 - m) mean_b q_bc              (local class prior, init 1/C)
    h~_c  <- m h~_c  + (1 - m) hist(argmax q)_c / B     (pseudo-label histogram, init 1/C)
    T_c = MaxNorm(p~)_c * tau = p~_c / max_c' p~_c' * tau

    loss = CE(x, y) + lambda_u * mean(1[max q >= T_argmax q] * CE(u_strong, argmax q))
           + w_f * L_f

with the self-adaptive fairness loss over the masked strong predictions p_s (mean p̄, label
histogram h̄): L_f = -H(SumNorm(p~ / h~), SumNorm(p̄ / h̄)), as in the reference code.

This is :class:`~aerossl.algorithms.fixmatch.FixMatch` with the ``freematch`` selector
(:class:`~aerossl.algorithms.selectors.FreeThresholds`) and the fairness loss.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from aerossl.algorithms.base import register_algorithm
from aerossl.algorithms.fixmatch import FixMatch, WeakStrongParams
from aerossl.algorithms.selectors import FreeThresholds

__all__ = ["FreeMatch", "FreeThresholds", "fairness_loss"]


def _inverse(t: Tensor) -> Tensor:
    """``1 / t`` with 0 where ``t`` is 0."""
    return torch.where(t > 0, 1 / t.clamp_min(1e-12), torch.zeros_like(t))


def fairness_loss(logits_strong: Tensor, mask: Tensor, p_model: Tensor,
                  label_hist: Tensor) -> Tensor:
    """FreeMatch's self-adaptive fairness loss ``-H(SumNorm(p~/h~), SumNorm(p̄/h̄))`` over the
    strong predictions whose pseudo-labels passed the threshold (0 when none did)."""
    probs = torch.softmax(logits_strong[mask.bool()].float(), dim=1)
    if len(probs) == 0:
        return logits_strong.new_zeros(()).float()
    hist = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1]).float()
    target = p_model * _inverse(label_hist)
    target = target / target.sum()
    mean = probs.mean(0) * _inverse(hist / hist.sum())
    mean = mean / mean.sum()
    return (target * torch.log(mean + 1e-12)).sum()


@register_algorithm("freematch")
class FreeMatch(FixMatch):
    """FixMatch with a self-adaptive global threshold modulated per class."""

    selector = "freematch"

    class Params(WeakStrongParams):
        ema_momentum: float = Field(
            0.999, ge=0, lt=1, description="momentum m of the threshold EMAs"
        )
        fairness_weight: float = Field(
            0.01, ge=0, description="weight w_f of the self-adaptive fairness loss"
        )

    def extra_loss(self, logits_strong: Tensor, mask: Tensor,
                   log: dict[str, Tensor | float]) -> Tensor:
        """``w_f * L_f``, logged as ``loss/fairness``."""
        state = self.thresholds
        loss_fair = fairness_loss(logits_strong, mask, state.p_model, state.label_hist)
        log["loss/fairness"] = loss_fair.detach()
        return self.p.fairness_weight * loss_fair
