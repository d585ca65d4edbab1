"""Supervised baseline: cross-entropy (binary cross-entropy for multi-label data) on the
labelled images only."""

from __future__ import annotations

from pydantic import Field

from aerossl.algorithms.base import (
    Algorithm,
    Batch,
    LabeledMixParams,
    StepContext,
    StepOutput,
    register_algorithm,
)


@register_algorithm("supervised")
class Supervised(Algorithm):
    """Minimise the task's loss on weakly augmented labelled images; unlabelled images are
    unused."""

    tasks = ("multiclass", "multilabel")

    class Params(LabeledMixParams):
        label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing")

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        if self.p.label_smoothing:
            targets = self.task.smooth(targets, self.p.label_smoothing)
        loss = self.task.loss(self.model(x), targets)
        return StepOutput(loss, {"loss/sup": loss.detach()})
