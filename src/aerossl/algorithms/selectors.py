"""Which pseudo-labels to keep: the confidence threshold and its adaptive variants.

A selector is a module called as ``selector(probs, unlabeled_index) -> mask`` with the
probabilities ``probs`` (B x K) of the weak views and the images' dataset indices; the mask
(B, float) weights the arg-max pseudo-labels (1 kept, 0 rejected). Adaptive selectors keep
their running state in buffers, so it is checkpointed with the algorithm that owns them.

- ``fixed``: FixMatch's threshold, ``max p >= tau`` (:class:`FixedThreshold`)
- ``flexmatch``: FlexMatch's class-wise curriculum thresholds (:class:`FlexThresholds`)
- ``freematch``: FreeMatch's self-adaptive thresholds (:class:`FreeThresholds`)
- ``softmatch``: SoftMatch's truncated Gaussian weights (:class:`SoftWeights`)
- ``relative``: AdaMatch's threshold relative to the labelled confidence
  (:class:`RelativeThreshold`)

:data:`SELECTORS` builds one from a method's parameters (``threshold``, ``threshold_warmup``,
``ema_momentum``, ``n_sigma``); FixMatch, FlexMatch, FreeMatch, SoftMatch, AdaMatch and the
spatiotemporal teacher use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn


def confident_pseudo_labels(probs: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Arg-max pseudo-labels of ``probs`` (B x K), their mask ``1[max p >= threshold]`` (float)
    and their confidence ``max p``."""
    confidence, pseudo = probs.max(dim=1)
    return pseudo, (confidence >= threshold).float(), confidence


class FixedThreshold(nn.Module):
    """FixMatch's selection: weight 1 where the confidence reaches ``threshold``, else 0."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        """Mask (B) of the arg-max pseudo-labels of ``probs`` (B x K)."""
        return confident_pseudo_labels(probs, self.threshold)[1]

    def log(self) -> dict[str, Tensor]:
        """Values to log (none: the threshold is fixed)."""
        return {}


def learning_effect(selected: Tensor, seen: Tensor, num_classes: int, warmup: bool) -> Tensor:
    """FlexMatch's ``beta_c`` from the per-image remembered classes (-1: none) and the
    seen-image mask: ``sigma_c / max(max_c' sigma_c', N_unused)`` (warm-up) or
    ``sigma_c / max_c' sigma_c'``, with ``sigma_c = #{i : yhat_i = c}``."""
    counts = torch.bincount(selected[selected >= 0], minlength=num_classes).float()
    norm = counts.max()
    if warmup:
        norm = torch.maximum(norm, (seen & (selected < 0)).sum().float())
    return counts / norm if norm > 0 else counts


def convex_threshold(tau: float, beta: Tensor) -> Tensor:
    """``tau * M(beta)`` with FlexMatch's convex mapping ``M(x) = x / (2 - x)``."""
    return tau * beta / (2 - beta)


class FlexThresholds(nn.Module):
    """FlexMatch's class-wise thresholds ``T_c = tau * M(beta_c)`` and their state.

    Called as ``thresholds(probs, index) -> mask``: 1 where ``max p >= T_argmax p`` with the
    thresholds from before this batch; then, in training mode and with dataset ``index``es, the
    batch's confident predictions (``max p >= tau``) are remembered and ``T_c`` recomputed. N
    in the warm-up normaliser counts the images seen so far. The state (remembered class per
    image, seen images, ``T_c``) lives in buffers.
    """

    def __init__(self, num_classes: int, num_images: int, tau: float, warmup: bool) -> None:
        super().__init__()
        self.num_classes, self.tau, self.warmup = num_classes, tau, warmup
        self.register_buffer("selected_label", torch.full((num_images,), -1, dtype=torch.long))
        self.register_buffer("seen", torch.zeros(num_images, dtype=torch.bool))
        self.register_buffer("class_threshold", torch.zeros(num_classes))

    @torch.no_grad()
    def update(self, index: Tensor, confidence: Tensor, pseudo: Tensor) -> None:
        """Remember confident predictions of the images ``index`` and recompute ``T_c``."""
        self.seen[index] = True
        confident = confidence >= self.tau
        self.selected_label[index[confident]] = pseudo[confident]
        beta = learning_effect(self.selected_label, self.seen, self.num_classes, self.warmup)
        self.class_threshold.copy_(convex_threshold(self.tau, beta))

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        """Mask (B) of the arg-max pseudo-labels of ``probs`` (B x K); updates when training."""
        confidence, pseudo = probs.max(dim=1)
        mask = (confidence >= self.class_threshold[pseudo]).float()
        if self.training and index is not None:
            self.update(index, confidence, pseudo)
        return mask

    def log(self) -> dict[str, Tensor]:
        """Mean and smallest class threshold."""
        return {"threshold/mean": self.class_threshold.mean(),
                "threshold/min": self.class_threshold.min()}


class FreeThresholds(nn.Module):
    """FreeMatch's self-adaptive thresholds and their EMAs (momentum m) over weak predictions q:

        tau  <- m tau  + (1 - m) mean_b max_c q_bc       (global threshold, init 1/C)
        p~_c <- m p~_c + (1 - m) mean_b q_bc             (local class prior, init 1/C)
        h~_c <- m h~_c + (1 - m) hist(argmax q)_c / B    (pseudo-label histogram, init 1/C)
        T_c = p~_c / max_c' p~_c' * tau

    Called as ``thresholds(probs, index=None) -> mask``: in training mode one EMA step on the
    batch's predictions first, then 1 where ``max q >= T_argmax q``. The EMAs live in buffers.
    """

    def __init__(self, num_classes: int, momentum: float) -> None:
        super().__init__()
        self.num_classes, self.momentum = num_classes, momentum
        self.register_buffer("global_threshold", torch.tensor(1.0 / num_classes))
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("label_hist", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, probs: Tensor) -> None:
        """One EMA step of ``tau``, ``p~`` and ``h~`` from a batch of weak-view predictions."""
        m = self.momentum
        confidence, pseudo = probs.max(dim=1)
        hist = torch.bincount(pseudo, minlength=self.num_classes).float() / len(probs)
        self.global_threshold.mul_(m).add_(confidence.mean(), alpha=1 - m)
        self.p_model.mul_(m).add_(probs.mean(0), alpha=1 - m)
        self.label_hist.mul_(m).add_(hist, alpha=1 - m)

    def class_thresholds(self) -> Tensor:
        """``T_c = p~_c / max p~ * tau``."""
        return self.p_model / self.p_model.max() * self.global_threshold

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        """Mask (B) of the arg-max pseudo-labels of ``probs`` (B x K); updates when training."""
        if self.training:
            self.update(probs)
        confidence, pseudo = probs.max(dim=1)
        return (confidence >= self.class_thresholds()[pseudo]).float()

    def log(self) -> dict[str, Tensor]:
        """Global and smallest class threshold."""
        return {"threshold/global": self.global_threshold.clone(),  # not the live buffer
                "threshold/min": self.class_thresholds().min()}


class SoftWeights(nn.Module):
    """SoftMatch's truncated Gaussian weights over the confidence ``c = max_k q_k``:

        mu    <- m mu    + (1 - m) mean_b c_b          (init 1/C)
        var   <- m var   + (1 - m) var_b c_b           (unbiased batch variance, init 1)
        w(c)  = exp(-(c - mu)^2 / (2 var / n_sigma^2))  for c < mu,  else 1

    Called as ``weights(probs, index=None) -> mask``: in training mode one EMA step first, then
    the per-image weights (in [0, 1]; no pseudo-label is thrown away outright). The mean and
    variance live in buffers.
    """

    def __init__(self, num_classes: int, momentum: float, n_sigma: float) -> None:
        super().__init__()
        self.momentum, self.n_sigma = momentum, n_sigma
        self.register_buffer("mu", torch.tensor(1.0 / num_classes))
        self.register_buffer("var", torch.tensor(1.0))

    @torch.no_grad()
    def update(self, confidence: Tensor) -> None:
        """One EMA step of the confidence's mean and variance."""
        m = self.momentum
        self.mu.mul_(m).add_(confidence.mean(), alpha=1 - m)
        if len(confidence) > 1:
            self.var.mul_(m).add_(confidence.var(unbiased=True), alpha=1 - m)

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        """Weights (B) of the arg-max pseudo-labels of ``probs`` (B x K)."""
        confidence = probs.max(dim=1).values.float()
        if self.training:
            self.update(confidence)
        below = (confidence - self.mu).clamp(max=0.0)
        return torch.exp(-below.square() / (2 * self.var / self.n_sigma**2))

    def log(self) -> dict[str, Tensor]:
        """The Gaussian's mean and standard deviation."""
        return {"weight/mu": self.mu.clone(), "weight/sigma": self.var.sqrt()}


class RelativeThreshold(nn.Module):
    """AdaMatch's relative confidence threshold: ``tau`` times the mean confidence of the
    labelled images' weak views in the same batch,

        mask = 1[max_k q_k >= tau * mean_b max_k p(x_b)_k]

    The labelled confidence is set before each selection with :meth:`observe_labeled`; it
    carries no state across steps.
    """

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = tau
        self.threshold = tau

    def observe_labeled(self, probs_x: Tensor) -> None:
        """Set the threshold from the labelled weak views' probabilities (B x K)."""
        self.threshold = float(self.tau * probs_x.max(dim=1).values.float().mean())

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        """Mask (B) of the arg-max pseudo-labels of ``probs`` (B x K)."""
        return confident_pseudo_labels(probs, self.threshold)[1]

    def log(self) -> dict[str, float]:
        """The relative threshold of the last batch."""
        return {"threshold/relative": self.threshold}


SelectorName = Literal["fixed", "flexmatch", "freematch", "softmatch", "relative"]

SELECTORS: dict[str, Callable[[Any, int, int], nn.Module]] = {
    "fixed": lambda p, num_classes, num_images: FixedThreshold(p.threshold),
    "flexmatch": lambda p, num_classes, num_images: FlexThresholds(
        num_classes, num_images, p.threshold, p.threshold_warmup),
    "freematch": lambda p, num_classes, num_images: FreeThresholds(num_classes, p.ema_momentum),
    "softmatch": lambda p, num_classes, num_images: SoftWeights(num_classes, p.ema_momentum,
                                                                p.n_sigma),
    "relative": lambda p, num_classes, num_images: RelativeThreshold(p.threshold),
}
"""Pseudo-label selection rules: ``make(params, num_classes, num_images)`` gives a module
called as ``selector(probs, unlabeled_index) -> mask``."""
