"""DeFixMatch: debiased FixMatch (Schmutz et al., "Don't fear the unlabelled: safe
semi-supervised learning via debiasing", ICLR 2023).

FixMatch's pseudo-label loss is biased: it pulls towards the model's own guesses. Its bias is
estimated on the labelled images, treated as if unlabelled (a weak and a strong view of each,
pseudo-labelled by the weak one), and subtracted:

    L_u(V) = mean_v 1[max p(v_weak) >= tau] * CE(v_strong, argmax p(v_weak))
    loss   = CE(x_weak, y) + lambda_u * (L_u(unlabelled) - L_u(labelled))

so that the unlabelled term can no longer make the risk estimate worse than the labelled one
alone. The labelled strong views train in the same forward as the rest.
"""

from __future__ import annotations

import torch

from aerossl.algorithms.base import (
    AlgorithmParams,
    Batch,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.fixmatch import FixMatch
from aerossl.algorithms.targets import masked_cross_entropy, soft_cross_entropy

__all__ = ["DeFixMatch"]


@register_algorithm("defixmatch")
class DeFixMatch(FixMatch):
    """FixMatch minus its own pseudo-label loss on the labelled images."""

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak", "strong": "strong"},
                        unlabeled={"weak": "weak", "strong": "strong"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        n = len(x)
        # labelled weak + labelled strong as the "labelled" part of one weak/strong forward
        logits_xs, logits_weak, logits_strong = self.weak_strong_logits(
            torch.cat([x, batch.labeled["strong"]]), batch.unlabeled["weak"],
            batch.unlabeled["strong"], joint=self.p.joint_batch)
        logits_x, logits_x_strong = logits_xs[:n], logits_xs[n:]

        loss_sup = soft_cross_entropy(logits_x, targets)
        pseudo_x, mask_x = self.pseudo_labels(logits_x)
        pseudo, mask = self.pseudo_labels(logits_weak, batch.unlabeled_index)
        loss_unsup = masked_cross_entropy(logits_strong, pseudo, mask)
        loss_bias = masked_cross_entropy(logits_x_strong, pseudo_x, mask_x)
        loss = (loss_sup + self.p.lambda_u * (loss_unsup - loss_bias)
                + self.entropy_loss(logits_strong))
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "loss/debias": loss_bias.detach(), "mask/labeled": mask_x.mean()}
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
