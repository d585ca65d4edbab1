"""CCSSL: class-aware contrastive semi-supervised learning (Yang et al., CVPR 2022), on FixMatch.

Two strong views of each unlabelled image are embedded by a projection head (MLP on the
backbone's pooled features, 64-d, L2-normalised). With the weak view's pseudo-label y_i and
confidence c_i, the target weight of a pair of images is

    W_ij = 1                  if i == j (the two views of one image, SimCLR's positive)
    W_ij = c_i c_j            if y_i == y_j and c_i, c_j >= contrast_threshold (class positives)
    W_ij = 0                  otherwise,

and over the 2B embeddings z (temperature t), leaving each anchor's self-pair out,

    L_c = mean_a [ -sum_b W_ab log softmax_b(z_a . z_b / t) / sum_b W_ab ]
    loss = FixMatch(strong view 1) + lambda_c * L_c
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
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
    register_algorithm,
)
from aerossl.algorithms.contrastive import contrastive_loss, projection_head
from aerossl.algorithms.selectors import confident_pseudo_labels
from aerossl.algorithms.targets import masked_cross_entropy, soft_cross_entropy


def positive_weights(pseudo: Tensor, confidence: Tensor, threshold: float) -> Tensor:
    """B×B target weights ``W`` of the class-aware contrastive loss (see the module docstring)."""
    confident = confidence >= threshold
    same = (pseudo[:, None] == pseudo[None, :]) & confident[:, None] & confident[None, :]
    weights = same.float() * confidence[:, None] * confidence[None, :]
    return weights.fill_diagonal_(1.0)


@register_algorithm("ccssl")
class CCSSL(Algorithm):
    """FixMatch plus a class-aware contrastive loss between two strong views."""

    class Params(SSLParams):
        threshold: float = Field(0.95, ge=0, le=1, description="FixMatch confidence threshold")
        lambda_u: float = Field(1.0, ge=0, description="weight of the FixMatch unlabelled loss")
        contrast_threshold: float = Field(
            0.8, ge=0, le=1, description="confidence both images need to be class positives"
        )
        temperature: float = Field(0.07, gt=0, description="contrastive temperature")
        lambda_c: float = Field(1.0, ge=0, description="weight of the contrastive loss")
        proj_dim: int = Field(64, ge=1, description="width of the projection")

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self.projection = projection_head(model.num_features, self.p.proj_dim)

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"},
                        unlabeled={"weak": "weak", "strong": "strong", "contrast": "contrast"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        u_weak, u_s1, u_s2 = (batch.unlabeled[v] for v in ("weak", "strong", "contrast"))
        m = len(u_s1)
        logits_x, logits_weak, logits_s1, feats = self.weak_strong_logits(
            x, u_weak, u_s1, contrast=u_s2)

        loss_sup = soft_cross_entropy(logits_x, targets)
        probs = self.align(torch.softmax(logits_weak.float(), dim=1))
        pseudo, mask, confidence = confident_pseudo_labels(probs, self.p.threshold)
        loss_unsup = masked_cross_entropy(logits_s1, pseudo, mask)

        z = F.normalize(self.projection(feats).float(), dim=1)
        weights = positive_weights(pseudo, confidence, self.p.contrast_threshold)
        loss_c = contrastive_loss(*z.split([m, m]), self.p.temperature, weights)

        loss = (loss_sup + self.p.lambda_u * loss_unsup + self.p.lambda_c * loss_c
                + self.entropy_loss(logits_s1))
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "loss/contrast": loss_c.detach(),
               "contrast_rate": (confidence >= self.p.contrast_threshold).float().mean()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
