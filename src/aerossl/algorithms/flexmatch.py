"""FlexMatch: curriculum pseudo labelling (Zhang et al., NeurIPS 2021), on FixMatch.

Each unlabelled image remembers its latest prediction whose confidence passed ``tau``. The
learning effect of class c is the number of images remembered as c, normalised (warm-up
variant) by the largest of those counts and the number of images not yet remembered:

    sigma_c = #{i : yhat_i = c},  beta_c = sigma_c / max(max_c' sigma_c', N - sum_c' sigma_c')
    T_c = tau * M(beta_c),  M(x) = x / (2 - x)   (convex mapping)
    loss = CE(x_weak, y) + lambda_u * mean(1[max p(u_weak) >= T_argmax] * CE(u_strong, yhat))

Without warm-up the normaliser is max_c sigma_c. N counts the unlabelled images seen so far
(an image enters the count the first time it is drawn), which after one pass over the
unlabelled set is the unlabelled set's size, as in the reference code.
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


def learning_effect(selected: Tensor, seen: Tensor, num_classes: int, warmup: bool) -> Tensor:
    """``beta_c`` from the per-image remembered classes (-1: none) and the seen-image mask."""
    counts = torch.bincount(selected[selected >= 0], minlength=num_classes).float()
    norm = counts.max()
    if warmup:
        norm = torch.maximum(norm, (seen & (selected < 0)).sum().float())
    return counts / norm if norm > 0 else counts


def convex_threshold(tau: float, beta: Tensor) -> Tensor:
    """``tau * M(beta)`` with ``M(x) = x / (2 - x)``."""
    return tau * beta / (2 - beta)


class FlexThresholds(nn.Module):
    """FlexMatch's class-wise thresholds ``T_c`` and their state, for any pseudo-labelling method.

    Called as ``thresholds(probs, index) -> mask``: 1 where ``max p >= T_argmax p`` with the
    thresholds from before this batch; then, in training mode and with dataset ``index``es, the
    batch's confident predictions are remembered and ``T_c`` recomputed. The state (remembered
    class per image, seen images, ``T_c``) lives in buffers, so it is checkpointed.
    """

    def __init__(self, num_classes: int, num_images: int, tau: float, warmup: bool) -> None:
        super().__init__()
        self.num_classes, self.tau, self.warmup = num_classes, tau, warmup
        self.register_buffer("selected_label", torch.full((num_images,), -1, dtype=torch.long))
        self.register_buffer("seen", torch.zeros(num_images, dtype=torch.bool))
        self.register_buffer("class_threshold", torch.zeros(num_classes))

    @torch.no_grad()
    def update(self, index: Tensor, confidence: Tensor, pseudo: Tensor) -> None:
        """Remember confident predictions of the images ``index`` and recompute ``T_c``."""
        self.seen[index] = True
        confident = confidence >= self.tau
        self.selected_label[index[confident]] = pseudo[confident]
        beta = learning_effect(self.selected_label, self.seen, self.num_classes, self.warmup)
        self.class_threshold.copy_(convex_threshold(self.tau, beta))

    def forward(self, probs: Tensor, index: Tensor | None) -> Tensor:
        """Mask (B) of the arg-max pseudo-labels of ``probs`` (B x K); updates when training."""
        confidence, pseudo = probs.max(dim=1)
        mask = (confidence >= self.class_threshold[pseudo]).float()
        if self.training and index is not None:
            self.update(index, confidence, pseudo)
        return mask


@register_algorithm("flexmatch")
class FlexMatch(Algorithm):
    """FixMatch with class-wise thresholds that follow each class's learning status."""

    class Params(SSLParams):
        threshold: float = Field(0.95, ge=0, le=1, description="upper threshold tau")
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss")
        threshold_warmup: bool = Field(
            True, description="count unused images in the normaliser (FlexMatch's warm-up)"
        )

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self.thresholds = FlexThresholds(num_classes, self.num_images, params.threshold,
                                         params.threshold_warmup)

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
        mask = self.thresholds(probs, batch.unlabeled_index)
        loss_unsup = masked_cross_entropy(logits_strong, pseudo, mask)

        loss = loss_sup + self.p.lambda_u * loss_unsup + self.entropy_loss(logits_strong)
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "threshold/mean": self.thresholds.class_threshold.mean(),
               "threshold/min": self.thresholds.class_threshold.min()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
