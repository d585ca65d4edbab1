"""Supervised baseline: cross-entropy on the labelled images only."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    StepContext,
    StepOutput,
    register_algorithm,
)


@register_algorithm("supervised")
class Supervised(Algorithm):
    """Minimise cross-entropy on weakly augmented labelled images; unlabelled images are unused."""

    class Params(AlgorithmParams):
        label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing")

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        logits = self.model(batch.labeled["weak"])
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.p.label_smoothing)
        return StepOutput(loss, {"loss/sup": loss.detach()})
