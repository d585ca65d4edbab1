"""FixMatch (Sohn et al., NeurIPS 2020), with a pluggable pseudo-label selector.

For each unlabelled image: predict on a weak view, keep the arg-max as a hard pseudo-label when
the selector accepts it, and train the strong view to predict it:

    loss = CE(x_weak, y) + lambda_u * mean(mask(p(u_weak)) * CE(u_strong, argmax p(u_weak)))

FixMatch's selector is the fixed confidence threshold ``mask = 1[max p >= tau]``. FlexMatch,
FreeMatch, SoftMatch and AdaMatch (:mod:`~aerossl.algorithms.flexmatch`,
:mod:`~aerossl.algorithms.freematch`, :mod:`~aerossl.algorithms.softmatch`,
:mod:`~aerossl.algorithms.adamatch`) are this class with their selectors
(:mod:`~aerossl.algorithms.selectors`).
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    register_algorithm,
)
from aerossl.algorithms.selectors import SELECTORS, SelectorName
from aerossl.algorithms.targets import masked_cross_entropy, soft_cross_entropy


class WeakStrongParams(SSLParams):
    """Options of every weak-to-strong pseudo-labelling method on FixMatch."""

    lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the guesses")
    joint_batch: bool = Field(
        False,
        description="one forward over labelled, weak and strong views (batch norm sees them "
        "together, as in the reference code); false runs the weak view without autograd",
    )


@register_algorithm("fixmatch")
class FixMatch(Algorithm):
    """Confidence-thresholded pseudo-labels from weak views train strong views."""

    #: the pseudo-label selector (:data:`~aerossl.algorithms.selectors.SELECTORS`)
    selector: ClassVar[SelectorName] = "fixed"

    class Params(WeakStrongParams):
        threshold: float = Field(0.95, ge=0, le=1, description="confidence threshold tau")

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        self.thresholds = SELECTORS[self.selector](params, num_classes, self.num_images)

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "strong": "strong"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        logits_x, logits_weak, logits_strong = self.weak_strong_logits(
            x, batch.unlabeled["weak"], batch.unlabeled["strong"], joint=self.p.joint_batch)

        loss_sup = soft_cross_entropy(logits_x, targets)
        self.observe_labeled(logits_x)
        pseudo, mask = self.pseudo_labels(logits_weak, batch.unlabeled_index)
        loss_unsup = masked_cross_entropy(logits_strong, pseudo, mask)

        loss = loss_sup + self.p.lambda_u * loss_unsup
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach()}
        extra = self.extra_loss(logits_strong, mask, log)
        if extra is not None:
            loss = loss + extra
        loss = loss + self.entropy_loss(logits_strong)
        log.update(self.thresholds.log())
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)

    def pseudo_labels(self, logits_weak: Tensor, index: Tensor | None = None
                      ) -> tuple[Tensor, Tensor]:
        """Arg-max pseudo-labels of the (aligned, tempered) weak-view predictions and the
        selector's mask or weights for them; ``index``: the images' dataset indices."""
        probs = self.align(torch.softmax(logits_weak.detach().float() / self.p.temperature,
                                         dim=1))
        return probs.argmax(dim=1), self.thresholds(probs, index)

    def observe_labeled(self, logits_x: Tensor) -> None:
        """Hook: the labelled views' logits, before the unlabelled guesses are made (unused
        here; AdaMatch sets its relative threshold and alignment target from them)."""

    def extra_loss(self, logits_strong: Tensor, mask: Tensor,
                   log: dict[str, Tensor | float]) -> Tensor | None:
        """A further weighted loss term on the strong views, logged into ``log`` (none)."""
        return None
