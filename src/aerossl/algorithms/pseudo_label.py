"""Pseudo-Label (Lee, ICML 2013 workshop on challenges in representation learning).

The network's own confident hard predictions on unlabelled images are trained as if they were
labels, on the same (weak) view, with a weight that ramps up from zero:

    loss = CE(x, y) + lambda_u(t) * mean(1[max p(u) >= tau] * CE(u, argmax p(u)))

as in USB's ``pseudolabel``; ``lambda_u(t)`` follows ``sigmoid_rampup``.
"""

from __future__ import annotations

import torch
from pydantic import Field

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.selectors import confident_pseudo_labels
from aerossl.algorithms.targets import full_precision, masked_cross_entropy, soft_cross_entropy
from aerossl.algorithms.utils import RampedParams, ramped_weight


@register_algorithm("pseudo_label")
class PseudoLabel(Algorithm):
    """Confident arg-max predictions of the weak view become its own hard labels."""

    class Params(RampedParams):
        threshold: float = Field(0.95, ge=0, le=1, description="confidence threshold tau")

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        u = batch.unlabeled["weak"]
        logits_x, logits_u = self.model(torch.cat([x, u])).split([len(x), len(u)])

        loss_sup = soft_cross_entropy(logits_x, targets)
        with torch.no_grad():
            probs = self.align(torch.softmax(full_precision(logits_u), dim=1))
            pseudo, mask, _ = confident_pseudo_labels(probs, self.p.threshold)
        loss_unsup = masked_cross_entropy(logits_u, pseudo, mask)

        weight = ramped_weight(self.p, ctx)
        loss = loss_sup + weight * loss_unsup + self.entropy_loss(logits_u)
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "lambda_u": weight}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
