"""FixMatch for multi-label scenes: per-class positive and negative pseudo-labels.

Each (image, class) entry of an unlabelled image is a binary problem. The weak view's sigmoid
``p`` makes an entry a positive pseudo-label when ``p >= tau_pos``, a negative one when
``p <= tau_neg``; the entries in between are ignored. The strong view is trained with binary
cross-entropy on the accepted entries (as in FixMatch, averaged over all entries):

    loss = BCE(x_weak, y) + lambda_u * mean_{i,c}(m_ic * BCE(u_strong_ic, 1[p_ic >= tau_pos]))
    m_ic = 1[p_ic >= tau_pos or p_ic <= tau_neg],   p = sigmoid(logits(u_weak) / T)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    LabeledMixParams,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)


def multilabel_pseudo_labels(
    probs: Tensor, pos_threshold: float, neg_threshold: float
) -> tuple[Tensor, Tensor]:
    """Binary pseudo-labels and the float mask of accepted entries of sigmoid ``probs``."""
    positive = probs >= pos_threshold
    negative = probs <= neg_threshold
    return positive.float(), (positive | negative).float()


@register_algorithm("multilabel_fixmatch")
class MultiLabelFixMatch(Algorithm):
    """Confident per-class sigmoid pseudo-labels of weak views train strong views."""

    tasks = ("multilabel",)

    class Params(LabeledMixParams):
        pos_threshold: float = Field(0.7, gt=0, le=1, description="p >= this: positive label")
        neg_threshold: float = Field(0.05, ge=0, lt=1, description="p <= this: negative label")
        temperature: float = Field(1.0, gt=0, description="sigmoid temperature of the guesses")
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss")

        @model_validator(mode="after")
        def _ordered(self) -> MultiLabelFixMatch.Params:
            if self.neg_threshold >= self.pos_threshold:
                raise ValueError(f"neg_threshold ({self.neg_threshold}) must be below "
                                 f"pos_threshold ({self.pos_threshold})")
            return self

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "strong": "strong"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        logits_x, logits_weak, logits_strong = self.weak_strong_logits(
            x, batch.unlabeled["weak"], batch.unlabeled["strong"])

        loss_sup = self.task.loss(logits_x, targets)
        probs = torch.sigmoid(logits_weak.float() / self.p.temperature)
        pseudo, mask = multilabel_pseudo_labels(probs, self.p.pos_threshold, self.p.neg_threshold)
        bce = F.binary_cross_entropy_with_logits(logits_strong.float(), pseudo, reduction="none")
        loss_unsup = (bce * mask).mean()

        loss = loss_sup + self.p.lambda_u * loss_unsup
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
