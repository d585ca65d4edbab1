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
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    SSLParams,
    StepContext,
    StepOutput,
    ViewSpec,
    masked_cross_entropy,
    register_algorithm,
    soft_cross_entropy,
)


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


class FreeThresholds(nn.Module):
    """FreeMatch's self-adaptive thresholds and their EMAs, for any pseudo-labelling method.

    Called as ``thresholds(probs, index=None) -> mask``: in training mode one EMA step on the
    batch's predictions first, then 1 where ``max q >= T_argmax q``. The EMAs (``tau``, ``p~``,
    ``h~``) live in buffers, so they are checkpointed.
    """

    def __init__(self, num_classes: int, momentum: float) -> None:
        super().__init__()
        self.num_classes, self.momentum = num_classes, momentum
        self.register_buffer("global_threshold", torch.tensor(1.0 / num_classes))
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("label_hist", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, probs: Tensor) -> None:
        """One EMA step of ``tau``, ``p~`` and ``h~`` from a batch of weak-view predictions."""
        m = self.momentum
        confidence, pseudo = probs.max(dim=1)
        hist = torch.bincount(pseudo, minlength=self.num_classes).float() / len(probs)
        self.global_threshold.mul_(m).add_(confidence.mean(), alpha=1 - m)
        self.p_model.mul_(m).add_(probs.mean(0), alpha=1 - m)
        self.label_hist.mul_(m).add_(hist, alpha=1 - m)

    def class_thresholds(self) -> Tensor:
        """``T_c = p~_c / max p~ * tau``."""
        return self.p_model / self.p_model.max() * self.global_threshold

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        """Mask (B) of the arg-max pseudo-labels of ``probs`` (B x K); updates when training."""
        if self.training:
            self.update(probs)
        confidence, pseudo = probs.max(dim=1)
        return (confidence >= self.class_thresholds()[pseudo]).float()


@register_algorithm("freematch")
class FreeMatch(Algorithm):
    """FixMatch with a self-adaptive global threshold modulated per class."""

    class Params(SSLParams):
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss")
        ema_momentum: float = Field(
            0.999, ge=0, lt=1, description="momentum m of the threshold EMAs"
        )
        fairness_weight: float = Field(
            0.01, ge=0, description="weight w_f of the self-adaptive fairness loss"
        )

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self.thresholds = FreeThresholds(num_classes, params.ema_momentum)

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "strong": "strong"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        logits_x, logits_weak, logits_strong = self.weak_strong_logits(
            x, batch.unlabeled["weak"], batch.unlabeled["strong"])

        loss_sup = soft_cross_entropy(logits_x, targets)
        probs = self.align(torch.softmax(logits_weak.float(), dim=1))
        pseudo = probs.argmax(dim=1)
        mask = self.thresholds(probs)
        state = self.thresholds
        loss_unsup = masked_cross_entropy(logits_strong, pseudo, mask)
        loss_fair = fairness_loss(logits_strong, mask, state.p_model, state.label_hist)

        loss = (loss_sup + self.p.lambda_u * loss_unsup + self.p.fairness_weight * loss_fair
                + self.entropy_loss(logits_strong))
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "loss/fairness": loss_fair.detach(), "threshold/global": state.global_threshold,
               "threshold/min": state.class_thresholds().min()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
