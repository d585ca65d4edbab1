"""Knowledge distillation (Hinton et al. 2015; hard distillation as in DeiT, Touvron et al. 2021).

A frozen teacher (any trained run) teaches a student of any size on the same views:

    soft:  KD = tau^2 * KL( softmax(t / tau) || softmax(s / tau) )
    hard:  KD = CE( s, argmax t )
    loss = (1 - alpha) * CE(s(x_labelled), y) + alpha * mean KD over labelled and unlabelled x

With ``alpha = 1`` and unlabelled images this is SimCLRv2's third stage: distilling a
fine-tuned network into a student on the unlabelled images.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

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
from aerossl.errors import ConfigError


class TeacherParams(AlgorithmParams):
    """Where a frozen teacher network comes from."""

    teacher: str | None = Field(
        None, description="the trained teacher (required): a run folder, or its "
        "checkpoints/last.pt or best.pt"
    )
    teacher_checkpoint: Literal["last", "best"] = Field(
        "last", description="the teacher's checkpoint: last or best"
    )


class TeacherMixin:
    """Loads the frozen teacher (kept as the attribute ``teacher``, so it is checkpointed)."""

    needs_images: ClassVar[bool] = True  # a teacher network on images

    teacher: nn.Module
    teacher_classes: list[str]

    def _load_teacher(self, params: TeacherParams, num_classes: int) -> None:
        if not params.teacher:
            raise ConfigError(f"algorithm.teacher: '{self.name}' needs the run folder of a "
                              "trained teacher")
        teacher, info = self.run_network(params.teacher, params.teacher_checkpoint, "teacher")
        if len(info["classes"]) != num_classes:
            raise ConfigError(f"algorithm.teacher: {params.teacher} has {len(info['classes'])} "
                              f"classes, this run's data {num_classes}")
        teacher.requires_grad_(False)
        self.teacher = teacher
        self.teacher_classes = info["classes"]

    def _check_classes(self, data: RunData) -> None:
        if data.classes and data.classes != self.teacher_classes:
            raise ConfigError("algorithm.teacher: the teacher was trained on classes "
                              f"{self.teacher_classes}, this run's data has {data.classes}")

    @torch.no_grad()
    def teacher_logits(self, x: Tensor) -> Tensor:
        """The teacher's logits in eval mode (no dropout, running BN statistics)."""
        self.teacher.eval()
        return self.teacher(x).float()


def distillation_loss(student: Tensor, teacher: Tensor, mode: str, tau: float) -> Tensor:
    """Soft (``tau^2 * KL``) or hard (CE with the teacher's arg-max) distillation loss."""
    if mode == "hard":
        return F.cross_entropy(student.float(), teacher.argmax(dim=1))
    log_s = F.log_softmax(student.float() / tau, dim=1)
    log_t = F.log_softmax(teacher.float() / tau, dim=1)
    return tau * tau * F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)


@register_algorithm("distill")
class Distill(TeacherMixin, Algorithm):
    """Student trained on true labels and on the teacher's outputs."""

    class Params(TeacherParams):
        mode: Literal["soft", "hard"] = Field("soft", description="soft (KL) or hard (argmax)")
        temperature: float = Field(4.0, gt=0, description="softmax temperature tau (soft mode)")
        alpha: float = Field(
            0.9, ge=0, le=1, description="weight of distillation vs CE on the true labels"
        )
        unlabeled: bool = Field(True, description="also distil on the unlabelled images")
        view: str = Field("weak", description="augment pipeline of student and teacher inputs")

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        unlabeled = {"x": params.view} if params.unlabeled else {}
        return ViewSpec(labeled={"x": params.view}, unlabeled=unlabeled)

    def __init__(self, model: nn.Module, params: Params, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self._load_teacher(params, num_classes)

    def prepare(self, data: RunData) -> None:
        self._check_classes(data)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x = batch.labeled["x"]
        if "x" in batch.unlabeled:
            x = torch.cat([x, batch.unlabeled["x"]])
        logits = self.model(x)
        n = len(batch.labels)
        loss_sup = F.cross_entropy(logits[:n].float(), batch.labels)
        teacher = self.teacher_logits(x)
        loss_kd = distillation_loss(logits, teacher, self.p.mode, self.p.temperature)
        loss = (1 - self.p.alpha) * loss_sup + self.p.alpha * loss_kd
        agree = (logits.argmax(1) == teacher.argmax(1)).float().mean()
        return StepOutput(loss, {"loss/sup": loss_sup.detach(), "loss/distill": loss_kd.detach(),
                                 "teacher_agreement": agree})
