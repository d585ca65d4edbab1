"""FixMatch (Sohn et al., NeurIPS 2020).

For each unlabelled image: predict on a weak view, keep the arg-max as a hard pseudo-label when
its confidence reaches ``threshold``, and train the strong view to predict it:

    loss = CE(x_weak, y) + lambda_u * mean(1[max p(u_weak) >= tau] * CE(u_strong, argmax p(u_weak)))
"""

from __future__ import annotations

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
    masked_cross_entropy,
    register_algorithm,
    soft_cross_entropy,
)


@register_algorithm("fixmatch")
class FixMatch(Algorithm):
    """Confidence-thresholded pseudo-labels from weak views train strong views."""

    class Params(SSLParams):
        threshold: float = Field(0.95, ge=0, le=1, description="confidence threshold tau")
        temperature: float = Field(1.0, gt=0, description="softmax temperature of the guesses")
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss")
        joint_batch: bool = Field(
            False,
            description="one forward over labelled, weak and strong views (batch norm sees them "
            "together, as in the reference code); false runs the weak view without autograd",
        )

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "strong": "strong"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        logits_x, logits_weak, logits_strong = self.weak_strong_logits(
            x, batch.unlabeled["weak"], batch.unlabeled["strong"], joint=self.p.joint_batch)

        loss_sup = soft_cross_entropy(logits_x, targets)
        probs = self.align(torch.softmax(logits_weak.float() / self.p.temperature, dim=1))
        confidence, pseudo = probs.max(dim=1)
        mask = (confidence >= self.p.threshold).float()
        loss_unsup = masked_cross_entropy(logits_strong, pseudo, mask)

        loss = loss_sup + self.p.lambda_u * loss_unsup + self.entropy_loss(logits_strong)
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
