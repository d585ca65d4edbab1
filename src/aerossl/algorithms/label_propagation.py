"""Label propagation for deep semi-supervised learning (Iscen et al., CVPR 2019).

Every ``refresh_every`` steps, from step 0: the network's pooled features of the training pool
(labelled and unlabelled images, clean views, eval mode) form a cosine k-NN graph over which
the labelled images' labels are propagated (:mod:`aerossl.algorithms.graph`); each unlabelled
image gets the arg-max class ``y_i`` of its propagated scores ``z_i``, a certainty
``w_i = 1 - H(z_i) / log C`` and its class's balancing weight ``zeta_c = n / (C n_c)`` (``n_c``
images propagated to class c). Between refreshes:

    loss = CE(x, y) + lambda_u * mean_u( w_u * zeta_{y_u} * CE(u_strong, y_u) )

The paper trains the unlabelled images on standard augmentations with Mean Teacher's
consistency loss beside; here they are FixMatch's strong views, and the consistency term beside
is FixMatch's (``consistency`` > 0, off by default):

    + consistency * mean_u( 1[max p(u_weak) >= tau] * CE(u_strong, argmax p(u_weak)) )

At the first refresh the features are those of the starting network (with ImageNet weights: the
frozen-feature graph of ``benchmarks/results/propagation_ucmerced.md``); later refreshes use the
features it learned: the trained weights', or (``graph_weights: evaluated``) those of the
weights the engine evaluates, its EMA copy when ``train.ema`` is on.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    LabeledMixParams,
    RunData,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.graph import propagated_labels
from aerossl.algorithms.selectors import confident_pseudo_labels
from aerossl.algorithms.targets import masked_cross_entropy, soft_cross_entropy

log = logging.getLogger("aerossl")

__all__ = ["LabelPropagation"]


@register_algorithm("label_propagation")
class LabelPropagation(Algorithm):
    """Strong views of unlabelled images learn the labels propagated over the feature graph."""

    class Params(LabeledMixParams):
        refresh_every: int = Field(
            100, ge=1, description="steps between propagations over the current features"
        )
        k: int = Field(10, ge=1, description="neighbours per image in the k-NN graph")
        alpha: float = Field(0.99, gt=0, lt=1, description="propagation's alpha")
        power: float = Field(3.0, gt=0, description="edge weight: cosine similarity ** power")
        balance: bool = Field(
            True, description="weigh each propagated class by n / (C n_c) (Iscen et al.)"
        )
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss")
        graph_weights: Literal["trained", "evaluated"] = Field(
            "trained", description="whose features build the graph: the trained weights, or "
            "the evaluated ones (the EMA copy when train.ema is on)"
        )
        consistency: float = Field(
            0.0, ge=0, description="weight of FixMatch's weak-to-strong loss beside (0: off, "
            "and no weak view of the unlabelled images is forwarded)"
        )
        threshold: float = Field(
            0.95, ge=0, le=1, description="confidence threshold of the consistency term"
        )

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self.register_buffer("propagated", torch.full((self.num_images,), -1, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(self.num_images))

    @classmethod
    def views(cls, params: Params) -> ViewSpec:  # type: ignore[override]
        unlabeled = {"strong": "strong"}
        if params.consistency > 0:
            unlabeled["weak"] = "weak"
        return ViewSpec(labeled={"weak": "weak"}, unlabeled=unlabeled)

    def refresh_interval(self) -> int:
        return self.p.refresh_every

    @torch.no_grad()
    def refresh(self, data: RunData) -> None:
        """Propagate the labelled images' labels over the current network's features."""
        pool = np.union1d(data.labeled, data.unlabeled)
        network = self.model
        if self.p.graph_weights == "evaluated" and data.evaluated is not None:
            network = data.evaluated
        features = data.features(network, pool)
        where = np.searchsorted(pool, data.labeled)
        labels = data.labels.cpu()[torch.as_tensor(data.labeled, dtype=torch.long)]
        pred, certainty = propagated_labels(
            features, torch.as_tensor(where, dtype=torch.long), labels, self.num_classes,
            self.p.k, self.p.alpha, self.p.power)
        weight = certainty
        if self.p.balance:
            counts = torch.bincount(pred, minlength=self.num_classes).float()
            zeta = len(pred) / (self.num_classes * counts.clamp_min(1))
            weight = weight * zeta[pred]
        rows = torch.as_tensor(pool, dtype=torch.long)
        self.propagated[rows] = pred.to(self.propagated)
        self.weights[rows] = weight.to(self.weights)
        log.info("label propagation: mean certainty %.3f over %d pool images",
                 float(certainty.mean()), len(pool))

    def offline_pseudo_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The propagated labels and weights of the last refresh (the engine scores them
        against the hidden labels as ``pseudo_label_acc``)."""
        return self.propagated, self.weights

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        assert batch.unlabeled_index is not None
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        u = batch.unlabeled["strong"]
        if self.p.consistency > 0:
            logits_x, logits_weak, logits_u = self.weak_strong_logits(
                x, batch.unlabeled["weak"], u)
        else:
            logits_x, logits_u = self.model(torch.cat([x, u])).split([len(x), len(u)])
        loss_sup = soft_cross_entropy(logits_x, targets)
        pseudo = self.propagated[batch.unlabeled_index]
        weight = self.weights[batch.unlabeled_index]
        loss_u = masked_cross_entropy(logits_u, pseudo.clamp_min(0), weight)
        loss = loss_sup + self.p.lambda_u * loss_u
        values = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_u.detach(),
                  "propagation/weight": weight.mean().detach()}
        if self.p.consistency > 0:
            guess, accepted, _ = confident_pseudo_labels(logits_weak.float().softmax(dim=1),
                                                         self.p.threshold)
            loss_c = masked_cross_entropy(logits_u, guess, accepted)
            loss = loss + self.p.consistency * loss_c
            values["loss/consistency"] = loss_c.detach()
            values["consistency/mask"] = accepted.mean()
        return StepOutput(loss, values, pseudo_labels=pseudo, mask=(weight > 0).float())
