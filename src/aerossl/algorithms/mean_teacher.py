"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017).

A teacher whose weights are an exponential moving average of the student's predicts on one weak
view; the student ``f_s``, on another weak view, is trained towards the teacher ``f_t``:

    loss = CE(x, y) + lambda_u(t) * mean_{i,c} (softmax(f_s(u1))_ic - softmax(f_t(u2))_ic)^2
    teacher <- a * teacher + (1 - a) * student,   a = min(1 - 1 / (k + 1), ema_decay)

``k`` is the update count (the reference code's warm-up of the decay). As in the reference
code the teacher runs in training mode (batch-norm normalises by the teacher's batch); its
running statistics are copied from the student after each update. The teacher belongs to the
algorithm (checkpointed with it, never optimised); the evaluated network stays the student, of
which the engine keeps its own EMA when ``train.ema`` is on.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.targets import full_precision, soft_cross_entropy, softmax_mse
from aerossl.algorithms.utils import RampedParams, ramped_weight
from aerossl.models.ema import ema_update


@register_algorithm("mean_teacher")
class MeanTeacher(Algorithm):
    """Student predictions follow those of an EMA teacher on another weak view."""

    class Params(RampedParams):
        lambda_u: float = Field(50.0, ge=0, description="weight of the consistency loss")
        ema_decay: float = Field(0.999, ge=0, lt=1, description="teacher EMA decay")

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self.teacher = copy.deepcopy(model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.register_buffer("teacher_updates", torch.zeros((), dtype=torch.long))

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "weak2": "weak"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        u_student, u_teacher = batch.unlabeled["weak"], batch.unlabeled["weak2"]
        logits_x, logits_u = self.model(torch.cat([x, u_student])).split([len(x), len(u_student)])
        with torch.no_grad():
            target = self.align(torch.softmax(full_precision(self.teacher(u_teacher)), dim=1))

        loss_sup = soft_cross_entropy(logits_x, targets)
        loss_unsup = softmax_mse(logits_u, target)
        weight = ramped_weight(self.p, ctx)
        loss = loss_sup + weight * loss_unsup + self.entropy_loss(logits_u)
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "lambda_u": weight}
        return StepOutput(loss, log)

    @torch.no_grad()
    def on_step_end(self, ctx: StepContext) -> None:
        self.update_teacher()

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher towards the student; buffers (BN statistics) copied."""
        k = int(self.teacher_updates)
        ema_update(self.teacher, self.model, min(1.0 - 1.0 / (k + 1), self.p.ema_decay))
        self.teacher_updates += 1
