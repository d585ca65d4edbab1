"""The losses and target transforms of the unlabelled branch, shared by the methods.

For probabilities ``p`` (B x K) of the images' views and logits ``z``:

    sharpen(p, T)_c   = p_c^(1/T) / sum_j p_j^(1/T)                 (MixMatch, UDA)
    align(p)          = normalise(p * prior / mean_run(p))          (ReMixMatch's distribution
                        alignment; prior uniform, mean_run an EMA of the batch means)
    H(z)              = -mean_b sum_c softmax(z)_c log softmax(z)_c  (entropy minimisation,
                        Grandvalet & Bengio 2005)
    soft_CE(z, q)     = -mean_b sum_c q_c log softmax(z)_c
    masked_CE(z, y, m)= mean_b m_b CE(z_b, y_b)                      (FixMatch's pseudo-labels)
    softmax_MSE(z, q) = mean_{b,c} (softmax(z)_c - q_c)^2            (Pi-model, Mean Teacher)

The options any semi-supervised method can switch on (``dist_align``, ``entropy_weight``) are
components built from its parameters (:class:`DistributionAlignment`,
:class:`EntropyMinimisation`, each with an ``off`` form), as the pseudo-label selectors are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sharpen(probs: Tensor, temperature: float) -> Tensor:
    """``p^(1/T)`` renormalised per row (equal to ``softmax(z / T)`` for ``p = softmax(z)``);
    probabilities are floored at 1e-12 first."""
    powered = probs.clamp_min(1e-12) ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def entropy(logits: Tensor) -> Tensor:
    """Mean prediction entropy of ``logits`` (in float32)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy against probability targets (rows of ``targets`` sum to 1)."""
    return -(targets * torch.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """``mean(mask * CE(logits, targets))`` over the batch: hard pseudo-labels weighted per image
    (0 for rejected ones), averaged over all images as in FixMatch."""
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (ce * mask).mean()


def full_precision(t: Tensor) -> Tensor:
    """``t`` in at least float32 (half/bfloat16 logits are upcast; float64 stays)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def softmax_mse(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Mean squared error between ``softmax(logits)`` and target probabilities, averaged over
    samples and classes (Laine & Aila; Tarvainen & Valpola)."""
    return F.mse_loss(torch.softmax(full_precision(logits), dim=1), target_probs.float())


class DistributionAlignment(nn.Module):
    """ReMixMatch's distribution alignment: ``p * target / running_mean(p)``, renormalised.

    ``target="uniform"``: the target is uniform (the labelled set of a stratified split is
    balanced; SoftMatch's uniform alignment). ``target="labeled"``: the target is the running
    mean of the labelled images' predictions, fed by :meth:`observe_labeled` (AdaMatch's
    relative alignment). The running means are buffers (checkpointed with the algorithm that
    owns them), updated in training mode with ``momentum``.
    """

    def __init__(self, num_classes: int, momentum: float, target: str = "uniform") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.momentum = momentum
        self.target = target
        self.register_buffer("model_mean", torch.full((num_classes,), 1.0 / num_classes))
        if target == "labeled":
            self.register_buffer("target_mean", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def observe_labeled(self, probs_x: Tensor) -> None:
        """One EMA step of the labelled target from labelled predictions (B x K)."""
        if self.target == "labeled" and self.training:
            m = self.momentum
            self.target_mean.mul_(m).add_(probs_x.float().mean(0), alpha=1 - m)

    def forward(self, probs: Tensor) -> Tensor:
        if self.training:
            m = self.momentum
            self.model_mean.mul_(m).add_(probs.detach().float().mean(0), alpha=1 - m)
        if self.target == "labeled":
            aligned = probs * self.target_mean / self.model_mean.clamp_min(1e-6)
        else:
            aligned = probs / self.model_mean.clamp_min(1e-6) / self.num_classes
        return aligned / aligned.sum(dim=1, keepdim=True)


class NoAlignment(nn.Module):
    """Distribution alignment off: the guesses as they are."""

    def observe_labeled(self, probs_x: Tensor) -> None:
        """Nothing to follow."""

    def forward(self, probs: Tensor) -> Tensor:
        return probs


class EntropyMinimisation(nn.Module):
    """``weight * H(logits)``; a zero loss when ``weight`` is 0 (the option off)."""

    def __init__(self, weight: float = 0.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, logits: Tensor) -> Tensor:
        if self.weight == 0:
            return logits.new_zeros(())
        return self.weight * entropy(logits)
