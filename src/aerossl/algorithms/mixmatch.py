"""MixMatch (Berthelot et al., NeurIPS 2019).

Guess a label for each unlabelled image from K weak views and sharpen it, then MixUp every
labelled and unlabelled view with a shuffled copy of the whole set:

    q = Sharpen(mean_k p(u_k), T),  Sharpen(p, T)_c = p_c^(1/T) / sum_j p_j^(1/T)
    lam ~ Beta(alpha, alpha),  lam' = max(lam, 1 - lam)   (each mixed row stays closest to itself)
    X', U' = MixUp(X, U) with targets mixed by the same lam' and permutation
    loss = CE(X', y') + lambda_u * ramp(t) * mean((softmax(U') - q')^2)

The guessing pass leaves batch norm's running statistics as they were; the mixed batch is
forwarded in chunks after the reference code's interleaving, so every chunk batch norm sees
holds labelled and unlabelled images.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import Tensor

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    SSLParams,
    StepContext,
    StepOutput,
    ViewSpec,
    rampup,
    register_algorithm,
)
from aerossl.algorithms.mixing import mixup
from aerossl.algorithms.targets import sharpen, soft_cross_entropy
from aerossl.algorithms.utils import frozen_bn_stats


def interleave(chunks: list[Tensor]) -> list[Tensor]:
    """Swap slices between ``k + 1`` equal-size chunks so each one holds a slice of every chunk
    (the reference code's ``interleave``). Chunk 0 gives its slice ``i`` to chunk ``i`` and
    takes that chunk's slice ``i``; the swap is its own inverse, so applying it to the outputs
    restores their order."""
    k = len(chunks) - 1
    size = len(chunks[0])
    groups = [size // (k + 1)] * (k + 1)
    for i in range(size - sum(groups)):
        groups[-i - 1] += 1
    parts = [list(c.split(groups)) for c in chunks]
    for i in range(1, k + 1):
        parts[0][i], parts[i][i] = parts[i][i], parts[0][i]
    return [torch.cat(p) for p in parts]


@register_algorithm("mixmatch")
class MixMatch(Algorithm):
    """Sharpened guesses from K weak views, MixUp over labelled + unlabelled, MSE consistency."""

    class Params(SSLParams):
        num_augs: int = Field(2, ge=1, description="weak views K per unlabelled image")
        temperature: float = Field(0.5, gt=0, description="sharpening temperature T")
        alpha: float = Field(0.75, gt=0, description="Beta(alpha, alpha) of the MixUp lambda")
        lambda_u: float = Field(10.0, ge=0, description="weight of the unlabelled MSE loss")
        rampup: float = Field(
            0.015625, ge=0, le=1,
            description="fraction of training over which lambda_u ramps up linearly (1/64)",
        )

        @model_validator(mode="after")
        def _no_labeled_mix(self) -> MixMatch.Params:
            if self.labeled_mix != "none":
                raise ValueError(f"labeled_mix={self.labeled_mix!r}: mixmatch already mixes every "
                                 "labelled and unlabelled image (MixUp with 'alpha'); leave "
                                 "labeled_mix at none")
            return self

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        k = params.num_augs  # type: ignore[attr-defined]
        return ViewSpec(labeled={"weak": "weak"},
                        unlabeled={f"weak{i}": "weak" for i in range(k)})

    def forward_interleaved(self, x: Tensor, chunk: int) -> Tensor:
        """Logits of ``x`` forwarded in interleaved chunks of ``chunk`` rows."""
        chunks = list(x.split(chunk))
        if len(chunks) == 1 or len(chunks[-1]) != chunk:
            return self.model(x)
        logits = [self.model(c) for c in interleave(chunks)]
        return torch.cat(interleave(logits))

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x = batch.labeled["weak"]
        targets = torch.nn.functional.one_hot(batch.labels, self.num_classes).float()
        u = [batch.unlabeled[f"weak{i}"] for i in range(self.p.num_augs)]
        with torch.no_grad(), frozen_bn_stats(self.model):
            logits_u = self.model(torch.cat(u)).float().chunk(len(u))
            probs = torch.stack([torch.softmax(lg, dim=1) for lg in logits_u]).mean(0)
            guess = sharpen(self.align(probs), self.p.temperature)

        n = len(x)
        mixed_x, mixed_t, lam = mixup(torch.cat([x, *u]), torch.cat([targets, *[guess] * len(u)]),
                                      self.p.alpha, keep_larger=True)
        logits = self.forward_interleaved(mixed_x, n)
        loss_sup = soft_cross_entropy(logits[:n], mixed_t[:n])
        loss_unsup = ((torch.softmax(logits[n:].float(), dim=1) - mixed_t[n:]) ** 2).mean()
        weight = self.p.lambda_u * rampup(ctx.step, self.p.rampup * ctx.total_steps, "linear")

        loss = loss_sup + weight * loss_unsup + self.entropy_loss(logits[n:])
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "lambda_u": weight, "mix_lambda": lam}
        pseudo = guess.argmax(dim=1)  # every guess is used: the mask is all ones
        mask = torch.ones_like(pseudo, dtype=torch.float)
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask)
