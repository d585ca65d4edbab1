"""Virtual Adversarial Training (Miyato et al., TPAMI 2018).

The prediction on each unlabelled image should not change under the small perturbation that
changes it most. That direction is found by power iteration on the KL divergence's curvature:

    d <- normalize(grad_d KL(p(u) || p(u + xi d)))     (vat_iterations times, d ~ N(0, I) first)
    r_adv = eps * normalize(d)
    loss = CE(x, y) + lambda_u(t) * KL(p(u) || p(u + r_adv)) [+ entropy_weight * H(p(u))]

``normalize`` scales each sample to unit L2 norm over all its pixels and channels; ``p(u)`` is a
fixed target (no gradient). Inputs are [0, 1] images (normalised inside the model), so ``eps`` is
an L2 norm in [0, 1] pixel units over the whole image: the default 2.5 (Miyato et al.'s SVHN
setting) is a root-mean-square change of 2.5 / sqrt(3 * 32 * 32) ~ 0.045 (about 11 grey levels)
per value of a 32 px RGB image; scale it with the image side for larger images. Perturbed
forward passes leave batch-norm running statistics alone and run without autocast (``xi`` is
far below bfloat16's resolution).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.targets import full_precision, soft_cross_entropy
from aerossl.algorithms.utils import RampedParams, frozen_bn_stats, ramped_weight


def l2_normalize(d: Tensor) -> Tensor:
    """Each sample of ``d`` scaled to unit L2 norm over all its non-batch dimensions."""
    norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
    return d / norm.view(-1, *([1] * (d.dim() - 1)))


def kl_div(probs: Tensor, logits: Tensor) -> Tensor:
    """Mean over samples of KL(probs || softmax(logits))."""
    logq = torch.log_softmax(full_precision(logits), dim=1)
    return (probs * (torch.log(probs.clamp_min(1e-12)) - logq)).sum(dim=1).mean()


def adversarial_direction(model: nn.Module, u: Tensor, probs: Tensor, xi: float,
                          iterations: int, d: Tensor | None = None) -> Tensor:
    """Unit (per sample) direction of the largest KL increase, by ``iterations`` steps of power
    iteration from ``d`` (Gaussian noise when not given)."""
    d = torch.randn_like(u) if d is None else d
    for _ in range(iterations):
        d = (xi * l2_normalize(d)).requires_grad_()
        distance = kl_div(probs, model(u + d))
        d = torch.autograd.grad(distance, d)[0].detach()
    return l2_normalize(d)


@register_algorithm("vat")
class VAT(Algorithm):
    """Smooth predictions against the worst-case small perturbation of each unlabelled image."""

    needs_images: ClassVar[bool] = True  # eps is in pixel units

    class Params(RampedParams):
        lambda_u: float = Field(0.3, ge=0, description="weight of the VAT loss (USB: 0.3)")
        eps: float = Field(2.5, gt=0, description="L2 norm of the adversarial perturbation")
        xi: float = Field(1e-6, gt=0, description="finite-difference step of power iteration")
        vat_iterations: int = Field(1, ge=1, description="power-iteration steps")

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak"})

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        x, targets = self.mix_labeled(batch.labeled["weak"], batch.labels)
        u = batch.unlabeled["weak"]
        logits_x, logits_u = self.model(torch.cat([x, u])).split([len(x), len(u)])
        loss_sup = soft_cross_entropy(logits_x, targets)

        probs = self.align(torch.softmax(full_precision(logits_u.detach()), dim=1))
        with frozen_bn_stats(self.model), torch.autocast(u.device.type, enabled=False):
            u32 = full_precision(u)
            r_adv = self.p.eps * adversarial_direction(
                self.model, u32, probs, self.p.xi, self.p.vat_iterations)
            loss_unsup = kl_div(probs, self.model(u32 + r_adv))

        weight = ramped_weight(self.p, ctx)
        loss = loss_sup + weight * loss_unsup + self.entropy_loss(logits_u)
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "lambda_u": weight}
        return StepOutput(loss, log)
