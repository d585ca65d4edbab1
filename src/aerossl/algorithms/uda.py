"""Unsupervised Data Augmentation (Xie et al., NeurIPS 2020).

The weak view's prediction, sharpened by a temperature and kept only where confident, is the
soft target of the strong view:

    q = sharpen(p(u_weak), T),  mask = 1[max p(u_weak) >= beta]
    loss = CE_tsa(x, y) + lambda_u * mean(mask * CE(q, p(u_strong)))

(the cross-entropy to ``q`` is the paper's KL up to a constant). Training-signal annealing
(``tsa``) drops labelled samples whose correct-class probability already exceeds
``eta_t = alpha_t (1 - 1/K) + 1/K``, with ``alpha_t`` = t (linear), 1 - exp(-5 t) (log) or
exp(5 (t - 1)) (exp) at training progress t, so the few labels are not memorised early.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    SSLParams,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.selectors import confident_pseudo_labels
from aerossl.algorithms.targets import full_precision, sharpen


def tsa_threshold(schedule: str, progress: float, num_classes: int) -> float:
    """Training-signal annealing threshold ``eta_t`` (1 when the schedule is "none")."""
    alpha = {
        "none": 1.0,
        "linear": progress,
        "log": 1.0 - math.exp(-5.0 * progress),
        "exp": math.exp(5.0 * (progress - 1.0)),
    }[schedule]
    return alpha * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


@register_algorithm("uda")
class UDA(Algorithm):
    """Sharpened, confidence-masked weak-view predictions are soft targets of strong views."""

    class Params(SSLParams):
        temperature: float = Field(0.4, gt=0, description="sharpening temperature T")
        threshold: float = Field(0.8, ge=0, le=1, description="confidence mask beta")
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss")
        tsa: Literal["none", "linear", "log", "exp"] = Field(
            "none", description="training-signal annealing schedule of the supervised loss")

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "strong": "strong"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        logits_x, logits_weak, logits_strong = self.weak_strong_logits(
            x, batch.unlabeled["weak"], batch.unlabeled["strong"])

        logp_x = torch.log_softmax(full_precision(logits_x), dim=1)
        eta = tsa_threshold(self.p.tsa, ctx.progress, self.num_classes)
        with torch.no_grad():
            sup_mask = ((logp_x.exp() * targets).sum(dim=1) <= eta).float()
        loss_sup = (-(targets * logp_x).sum(dim=1) * sup_mask).mean()

        probs = self.align(torch.softmax(full_precision(logits_weak), dim=1))
        pseudo, mask, _ = confident_pseudo_labels(probs, self.p.threshold)
        q = sharpen(probs, self.p.temperature)
        ce = -(q * torch.log_softmax(full_precision(logits_strong), dim=1)).sum(dim=1)
        loss_unsup = (ce * mask).mean()

        loss = loss_sup + self.p.lambda_u * loss_unsup + self.entropy_loss(logits_strong)
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "lambda_u": self.p.lambda_u, "tsa_threshold": eta,
               "sup_mask_rate": sup_mask.mean()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
