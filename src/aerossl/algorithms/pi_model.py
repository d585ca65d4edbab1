"""Pi-model (Laine & Aila, ICLR 2017; Sajjadi et al., NeurIPS 2016).

Two stochastic weak views of each unlabelled image should get the same prediction:

    loss = CE(x, y) + lambda_u(t) * mean_{i,c} (softmax(f(u1))_ic - softmax(f(u2))_ic)^2

with ``lambda_u(t)`` ramped up by ``sigmoid_rampup``. The paper back-propagates through both
branches (``detach_target: false``); the default, as in USB, treats the second view's prediction
as a fixed target, the form Mean Teacher also uses.
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
from aerossl.algorithms.targets import full_precision, soft_cross_entropy, softmax_mse
from aerossl.algorithms.utils import RampedParams, ramped_weight


@register_algorithm("pi_model")
class PiModel(Algorithm):
    """Consistency (MSE of softmax outputs) between two weak views of each unlabelled image."""

    class Params(RampedParams):
        lambda_u: float = Field(10.0, ge=0, description="weight of the consistency loss")
        detach_target: bool = Field(
            True, description="no gradient through the second view (USB); false: both views "
            "get gradients, as in the paper",
        )

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "weak2": "weak"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        u1, u2 = batch.unlabeled["weak"], batch.unlabeled["weak2"]
        logits_x, logits_1, logits_2 = self.model(torch.cat([x, u1, u2])).split(
            [len(x), len(u1), len(u2)])

        loss_sup = soft_cross_entropy(logits_x, targets)
        target = self.align(torch.softmax(full_precision(logits_2), dim=1))
        if self.p.detach_target:
            target = target.detach()
        loss_unsup = softmax_mse(logits_1, target)

        weight = ramped_weight(self.p, ctx)
        loss = loss_sup + weight * loss_unsup + self.entropy_loss(logits_1)
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "lambda_u": weight}
        return StepOutput(loss, log)
