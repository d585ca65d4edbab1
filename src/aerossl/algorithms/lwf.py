"""Learning without Forgetting (Li & Hoiem, "Learning without Forgetting", TPAMI 2018).

Fine-tune a trained network on a new task while it keeps its old head, trained to go on
predicting what the ORIGINAL network predicted on the new images, so the old task is not
forgotten without any of its data. With shared parameters ``theta_s``, the old head
``theta_o`` and the new head ``theta_n``:

    L_new = CE(new_head(f(x_labelled)), y)
    y_o   = softmax(original(x) / T)                 (the frozen original network, no gradient)
    L_old = mean_x  -sum_j y_o[j] * log softmax(old_head(f(x)) / T)[j]
    loss  = L_new + lambda_o * L_old

over the new task's images ``x`` (the labelled ones, and by default the unlabelled ones too:
they are new-task images as well). ``T = 2`` and ``lambda_o = 1`` as in the paper; during the
first ``warmup_steps`` only the new head learns (the paper's warm-up). The targets are computed
on the fly by the frozen original network on the same augmented views, which equals recording
its outputs once per view.

The network is initialised from the original one through the transfer path (``model.init``;
its head replaced by a new one for the new classes) and ``algorithm.source`` names the same run:
``aerossl finetune SOURCE_RUN CONFIG --algorithm lwf`` sets both. The old head is kept in the
run's checkpoint (``old_head``); :func:`old_task_network` rebuilds the network of the old task
after training, so old-task accuracy stays measurable.
"""

from __future__ import annotations

import copy
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


def lwf_loss(old_logits: Tensor, original_logits: Tensor, temperature: float) -> Tensor:
    """Li & Hoiem's knowledge-distillation loss: the mean over images of the cross-entropy
    ``-sum_j softmax(original / T)_j log softmax(old / T)_j`` (no ``T^2`` factor, as in the
    paper; ``lambda_o`` weighs it)."""
    targets = F.softmax(original_logits.float() / temperature, dim=1)
    log_probs = F.log_softmax(old_logits.float() / temperature, dim=1)
    return -(targets * log_probs).sum(dim=1).mean()


@register_algorithm("lwf")
class LwF(Algorithm):
    """Learning without Forgetting: new-task cross-entropy plus distillation of the original
    network's outputs into the kept old head."""

    needs_images: ClassVar[bool] = True  # the original network runs on the images
    transfer_source: ClassVar[str | None] = "source"  # aerossl finetune fills it

    class Params(AlgorithmParams):
        source: str | None = Field(
            None, description="the original network (required): the run folder model.init "
            "transfers from, or its checkpoints/last.pt or best.pt"
        )
        source_checkpoint: Literal["last", "best"] = Field(
            "last", description="the source run's checkpoint: last or best"
        )
        temperature: float = Field(2.0, gt=0, description="softmax temperature T of L_old")
        old_weight: float = Field(1.0, ge=0, description="lambda_o, weight of the old-task loss")
        old_head: Literal["train", "frozen"] = Field(
            "train", description="the kept old head: trained with L_old (the paper) or frozen"
        )
        unlabeled: bool = Field(
            True, description="also distil on the unlabelled new-task images (else on the "
            "labelled ones only)"
        )
        warmup_steps: int = Field(
            0, ge=0, description="first steps training the new head only (backbone and old "
            "head fixed)"
        )
        view: str = Field("weak", description="augment pipeline of the images")

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        unlabeled = {"x": params.view} if params.unlabeled else {}
        return ViewSpec(labeled={"x": params.view}, unlabeled=unlabeled)

    def __init__(self, model: nn.Module, params: Params, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        if not params.source:
            raise ConfigError("algorithm.source: 'lwf' needs the run folder of the original "
                              "network (the one model.init names)")
        original, info = self.run_network(params.source, params.source_checkpoint, "source")
        channels = int(model.mean.shape[0]) if hasattr(model, "mean") else info["channels"]
        if info["channels"] != channels:
            raise ConfigError(f"algorithm.source: {params.source} takes {info['channels']}-"
                              f"channel images, this run's data has {channels}; LwF needs the "
                              "original network to see the new images as they are")
        original.requires_grad_(False)
        self.original = original.eval()
        self.old_classes: list[str] = info["classes"]
        self.old_head = copy.deepcopy(original.head)
        self.old_head.requires_grad_(params.old_head == "train")

    def prepare(self, data: RunData) -> None:
        """Check that the network starts from the original one (model.init = source)."""
        own = self.model.backbone.state_dict()
        for key, value in self.original.backbone.state_dict().items():
            if key.startswith("head.") or key not in own:
                continue
            if own[key].shape != value.shape or not torch.equal(own[key].cpu(), value.cpu()):
                raise ConfigError(
                    f"algorithm.source: the network does not start from {self.p.source} "
                    f"({key} differs); set model.init to the same run (aerossl finetune "
                    "SOURCE CONFIG --algorithm lwf sets both)")

    @classmethod
    def kept_old_task(cls, params: Params, state: dict[str, Tensor]  # type: ignore[override]
                      ) -> tuple[str, str, dict[str, Tensor]]:
        """The source run and the old head as trained beside the new one."""
        head = {k[len("old_head."):]: v for k, v in state.items() if k.startswith("old_head.")}
        return str(params.source), params.source_checkpoint, head

    @torch.no_grad()
    def original_logits(self, x: Tensor) -> Tensor:
        """The original network's old-task logits (eval mode: running BN statistics)."""
        self.original.eval()
        return self.original(x).float()

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x = batch.labeled["x"]
        if "x" in batch.unlabeled:
            x = torch.cat([x, batch.unlabeled["x"]])
        n = len(batch.labels)
        warmup = ctx.step < self.p.warmup_steps
        features = self.model.forward_features(x)
        if warmup:
            features = features.detach()
        loss_new = F.cross_entropy(self.model.forward_head(features[:n]).float(), batch.labels)
        log: dict[str, Tensor | float] = {"loss/new": loss_new.detach()}
        if warmup or self.p.old_weight == 0:
            return StepOutput(loss_new, log)
        old = self.old_head(features)
        target = self.original_logits(x)
        loss_old = lwf_loss(old, target, self.p.temperature)
        log.update({"loss/old": loss_old.detach(),
                    "old_agreement": (old.argmax(1) == target.argmax(1)).float().mean()})
        return StepOutput(loss_new + self.p.old_weight * loss_old, log)
