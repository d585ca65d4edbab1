"""SimCLR-style colour augmentations (colour jitter, random grayscale), per-image and batched.

Both work for any channel count: the grey level is ``functional.grey`` (BT.601 luma for RGB,
the channel mean otherwise), and saturation is a blend with that grey image (identity for a
single band).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aerossl.augment import functional as AF
from aerossl.augment.base import (
    Augmentation,
    Params,
    check_batch,
    check_number,
    register_augmentation,
    to_device,
)


@register_augmentation("colorjitter")
class ColorJitter(Augmentation):
    """With probability ``p`` per image: brightness, then contrast, then saturation, each by a
    factor uniform in ``[1 - s, 1 + s]`` for its strength ``s`` (SimCLR: 0.4 each, p = 0.8).

    Hue jitter is left out: it is defined for RGB only. Params: ``brightness``, ``contrast``,
    ``saturation`` (B,) float factors, 1 where the image is not jittered.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 p: float = 0.8) -> None:
        self.brightness = check_number("colorjitter", "brightness", brightness, 0.0, 1.0)
        self.contrast = check_number("colorjitter", "contrast", contrast, 0.0, 1.0)
        self.saturation = check_number("colorjitter", "saturation", saturation, 0.0, 1.0)
        self.p = check_number("colorjitter", "p", p, 0.0, 1.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Factors ``1 + s·u`` with ``u`` uniform in [-1, 1), set to 1 where not applied."""
        apply = torch.rand(batch_size, generator=generator) < self.p
        out = {}
        for key in ("brightness", "contrast", "saturation"):
            u = torch.rand(batch_size, generator=generator) * 2 - 1
            out[key] = torch.where(apply, 1 + getattr(self, key) * u, torch.ones(batch_size))
        return out

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Brightness, contrast and saturation (PIL enhance definitions) in that order."""
        check_batch(x)
        p = to_device(params, x.device)
        x = AF.brightness(x, p["brightness"])
        x = AF.contrast(x, p["contrast"])
        return AF.color(x, p["saturation"])


@register_augmentation("grayscale")
class Grayscale(Augmentation):
    """With probability ``p`` per image, every channel replaced by the grey level (SimCLR:
    p = 0.2). Params: ``gray`` (B,) bool."""

    def __init__(self, p: float = 0.2) -> None:
        self.p = check_number("grayscale", "p", p, 0.0, 1.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """``gray ~ Bernoulli(p)`` per image."""
        return {"gray": torch.rand(batch_size, generator=generator) < self.p}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """``grey(x)`` broadcast over the channels where ``gray``, ``x`` elsewhere."""
        check_batch(x)
        gray = to_device(params, x.device)["gray"].view(-1, 1, 1, 1)
        return torch.where(gray, AF.grey(x).expand_as(x), x)
