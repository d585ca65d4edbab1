"""Noisy Student training (Xie et al., CVPR 2020): one round.

Before the first step the frozen teacher labels every unlabelled image once, without noise
(clean images, eval mode): soft targets ``p_t(x)`` or their arg-max. Pseudo-labels below the
confidence ``threshold`` are dropped; with ``balance`` each class keeps its ``K`` most confident
images (``K`` = kept images / classes) and classes with fewer get weight ``K / n_c`` (the
paper duplicates them). Labelled images keep their true label. The student (equal or larger;
noised by strong augmentation and the model's dropout) is trained from scratch on

    loss = CE(s(x_labelled_strong), y) + lambda_u * mean_u( w_u * CE(s(u_strong), target_u) )

The pipeline (:mod:`aerossl.pipelines.stages`) makes the student the next round's teacher.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    RunData,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.distill import TeacherMixin, TeacherParams

log = logging.getLogger("aerossl")


def balance_weights(confidence: torch.Tensor, label: torch.Tensor, keep: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """Per-image weights that balance the kept pseudo-labels over classes: the ``K`` most
    confident images of each class weigh 1 (others 0), a class with ``n_c < K`` images weighs
    ``K / n_c`` each, where ``K = kept / num_classes`` (rounded up for the top-K)."""
    weight = torch.zeros(len(label), dtype=torch.float32)
    per_class = int(keep.sum()) / num_classes
    for c in range(num_classes):
        idx = torch.nonzero(keep & (label == c)).flatten()
        if len(idx) == 0:
            continue
        if len(idx) >= per_class:
            top = idx[confidence[idx].argsort(descending=True)[: math.ceil(per_class)]]
            weight[top] = 1.0
        else:
            weight[idx] = per_class / len(idx)
    return weight


@register_algorithm("noisy_student")
class NoisyStudent(TeacherMixin, Algorithm):
    """A noised student learns from labels and the teacher's offline pseudo-labels."""

    class Params(TeacherParams):
        soft: bool = Field(True, description="soft pseudo-labels (false: the teacher's arg-max)")
        threshold: float = Field(0.0, ge=0, le=1, description="minimum teacher confidence")
        balance: bool = Field(True, description="balance pseudo-labelled images over classes")
        lambda_u: float = Field(1.0, ge=0, description="weight of the pseudo-labelled loss")
        view: str = Field("strong", description="augment pipeline (the input noise)")

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"x": params.view}, unlabeled={"x": params.view})

    def __init__(self, model: torch.nn.Module, params: Params, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self._load_teacher(params, num_classes)
        self.register_buffer("targets", torch.zeros(self.num_images, num_classes))
        self.register_buffer("weights", torch.zeros(self.num_images))

    @torch.no_grad()
    def prepare(self, data: RunData) -> None:
        """Pseudo-label the unlabelled images with the clean teacher."""
        self._check_classes(data)
        idx = np.setdiff1d(data.unlabeled, data.labeled)
        probs = data.predict(self.teacher, idx).softmax(dim=1)
        confidence, label = probs.max(dim=1)
        keep = confidence >= self.p.threshold
        if self.p.balance:
            weight = balance_weights(confidence, label, keep, self.num_classes)
        else:
            weight = keep.float()
        targets = probs if self.p.soft else F.one_hot(label, self.num_classes).float()
        rows = torch.as_tensor(idx, dtype=torch.long)
        self.targets[rows] = targets.to(self.targets)
        self.weights[rows] = weight.to(self.weights)
        lab = torch.as_tensor(np.asarray(data.labeled), dtype=torch.long)
        true = data.labels.cpu()[lab]
        self.targets[lab] = F.one_hot(true, self.num_classes).float().to(self.targets)
        self.weights[lab] = 1.0
        log.info("noisy student: %d of %d unlabelled images pseudo-labelled",
                 int((weight > 0).sum()), len(idx))

    def offline_pseudo_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's pseudo-labels (arg-max of the targets) and their weights: the engine
        logs their accuracy against the hidden labels as ``pseudo_label_acc``."""
        return self.targets.argmax(dim=1), self.weights

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # older checkpoints kept the pseudo-labels' accuracy; the engine computes it now
        state_dict.pop(prefix + "pseudo_label_acc", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, u = batch.labeled["x"], batch.unlabeled["x"]
        assert batch.unlabeled_index is not None
        logits_x, logits_u = self.model(torch.cat([x, u])).split([len(x), len(u)])
        loss_sup = F.cross_entropy(logits_x.float(), batch.labels)
        targets = self.targets[batch.unlabeled_index]
        weight = self.weights[batch.unlabeled_index]
        per_image = -(targets * torch.log_softmax(logits_u.float(), dim=1)).sum(dim=1)
        loss_u = (weight * per_image).mean()
        loss = loss_sup + self.p.lambda_u * loss_u
        values = {"loss/sup": loss_sup.detach(), "loss/pseudo": loss_u.detach()}
        return StepOutput(loss, values, pseudo_labels=targets.argmax(1),
                          mask=(weight > 0).float())
