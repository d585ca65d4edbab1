"""SimMatch: semi-supervised learning with similarity matching (Zheng et al., CVPR 2022).

A projection head embeds pooled features (z, L2-normalised). A labelled memory bank holds the
embeddings b_k of the last K labelled views with their labels y_k (the current batch's
included). For an unlabelled image with weak view w and strong view s:

    p      = DA(softmax(f(w)))                          the weak view's class prediction
    q^w_k  = softmax_k(z_w . b_k / t),  q^s_k = softmax_k(z_s . b_k / t)
    q^_k   = q^w_k p_{y_k} / sum_j q^w_j p_{y_j}         (unfolding: labels scale similarities)
    p^_c   = alpha p_c + (1 - alpha) sum_{k: y_k = c} q^w_k     (aggregation)
    loss   = CE(x, y) + lambda_u mean(1[max p^ >= tau] CE(f(s), p^))
             + lambda_in mean(CE(q^, q^s))

The class prediction and the similarity distribution calibrate each other: an unlabelled image
that looks like labelled images of a class is pulled towards it even before the classifier is
confident. The bank (embeddings, labels, position) lives in buffers, so it is checkpointed.
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
from aerossl.algorithms.contrastive import projection_head
from aerossl.algorithms.targets import soft_cross_entropy

__all__ = ["LabeledBank", "SimMatch", "propagate"]


class LabeledBank(nn.Module):
    """A queue of the last ``size`` labelled embeddings and their labels (buffers)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("embeddings", torch.zeros(size, dim))
        self.register_buffer("labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, z: Tensor, y: Tensor) -> None:
        """Enqueue embeddings ``z`` (B x d) with labels ``y`` (B), oldest out first."""
        size = len(self.labels)
        z, y = z[-size:], y[-size:]
        idx = (self.position + torch.arange(len(y), device=y.device)) % size
        self.embeddings[idx] = z.to(self.embeddings.dtype)
        self.labels[idx] = y
        self.position.copy_((self.position + len(y)) % size)
        self.filled.copy_(torch.clamp(self.filled + len(y), max=size))

    def contents(self) -> tuple[Tensor, Tensor]:
        """The filled part: embeddings (K x d) and labels (K)."""
        k = int(self.filled)
        return self.embeddings[:k], self.labels[:k]


def propagate(probs: Tensor, sim_weak: Tensor, bank_labels: Tensor, alpha: float
              ) -> tuple[Tensor, Tensor]:
    """SimMatch's label propagation: the unfolded similarity targets ``q^`` (B x K) and the
    aggregated class targets ``p^`` (B x C) from the weak view's class probabilities ``probs``
    (B x C) and similarities ``sim_weak`` (B x K) to bank items of labels ``bank_labels``."""
    factor = probs.gather(1, bank_labels.expand(len(probs), -1))
    unfolded = sim_weak * factor
    unfolded = unfolded / unfolded.sum(dim=1, keepdim=True).clamp_min(1e-12)
    aggregated = torch.zeros_like(probs).scatter_add_(
        1, bank_labels.expand(len(probs), -1), sim_weak)
    return unfolded, alpha * probs + (1 - alpha) * aggregated


@register_algorithm("simmatch")
class SimMatch(Algorithm):
    """FixMatch's weak-to-strong step with soft targets calibrated by similarities to a bank of
    labelled embeddings, plus a similarity-matching loss."""

    class Params(SSLParams):
        threshold: float = Field(0.95, ge=0, le=1, description="confidence threshold tau")
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled class loss")
        lambda_in: float = Field(1.0, ge=0, description="weight of the similarity loss")
        temperature: float = Field(0.1, gt=0, description="similarity temperature t")
        alpha: float = Field(
            0.9, ge=0, le=1, description="share of the class prediction in the aggregated "
            "target (the rest: the similarities' class sums)")
        proj_dim: int = Field(128, ge=1, description="width of the projection")
        bank_size: int = Field(256, ge=1, description="labelled embeddings kept in the bank")
        dist_align: bool = Field(True, description="distribution alignment of the guesses")

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self.projection = projection_head(model.num_features, self.p.proj_dim)
        self.labeled_bank = LabeledBank(self.p.bank_size, self.p.proj_dim)

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "strong": "strong"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        u_weak, u_strong = batch.unlabeled["weak"], batch.unlabeled["strong"]
        n, w = len(x), len(u_weak)
        features = self.model.forward_features(torch.cat([x, u_weak, u_strong]))
        logits = self.model.forward_head(features)
        logits_x, logits_weak, logits_strong = logits.split([n, w, len(u_strong)])
        z = F.normalize(self.projection(features).float(), dim=1)
        z_x, z_weak, z_strong = z.split([n, w, len(u_strong)])

        loss_sup = soft_cross_entropy(logits_x, targets)
        self.labeled_bank.push(z_x.detach(), batch.labels)
        bank_z, bank_y = self.labeled_bank.contents()
        with torch.no_grad():
            probs = self.align(torch.softmax(logits_weak.detach().float(), dim=1))
            sim_weak = torch.softmax(z_weak.detach() @ bank_z.T / self.p.temperature, dim=1)
            unfolded, target = propagate(probs, sim_weak, bank_y, self.p.alpha)
            confidence, pseudo = target.max(dim=1)
            mask = (confidence >= self.p.threshold).float()
        loss_unsup = (mask * -(target * F.log_softmax(logits_strong.float(), 1)).sum(1)).mean()
        log_sim_strong = F.log_softmax(z_strong @ bank_z.T / self.p.temperature, dim=1)
        loss_in = -(unfolded * log_sim_strong).sum(dim=1).mean()

        loss = (loss_sup + self.p.lambda_u * loss_unsup + self.p.lambda_in * loss_in
                + self.entropy_loss(logits_strong))
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "loss/similarity": loss_in.detach()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
