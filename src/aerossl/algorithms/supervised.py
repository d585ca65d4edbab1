"""Supervised baseline: cross-entropy on the labelled images only."""

from __future__ import annotations

from pydantic import Field

from aerossl.algorithms.base import (
    Algorithm,
    Batch,
    LabeledMixParams,
    StepContext,
    StepOutput,
    register_algorithm,
    soft_cross_entropy,
)


@register_algorithm("supervised")
class Supervised(Algorithm):
    """Minimise cross-entropy on weakly augmented labelled images; unlabelled images are unused."""

    class Params(LabeledMixParams):
        label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing")

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        if self.p.label_smoothing:
            targets = targets * (1 - self.p.label_smoothing) + self.p.label_smoothing / len(
                targets[0])
        loss = soft_cross_entropy(self.model(x), targets)
        return StepOutput(loss, {"loss/sup": loss.detach()})
