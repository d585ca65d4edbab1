"""The strong, appearance-changing views of contrastive learning (SimCLR, Chen et al. 2020).

``resized_crop`` (random area and aspect ratio, resized back), ``color_jitter`` (brightness,
contrast, saturation, hue), ``random_grayscale`` and ``gaussian_blur``; batched, any channel
count (hue needs 3 channels and is skipped otherwise; saturation and grey use
:func:`aerossl.augment.functional.grey`), parameters drawn on the CPU from an explicit generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from aerossl.augment import functional as AF
from aerossl.augment.base import (
    Augmentation,
    Params,
    check_batch,
    check_number,
    register_augmentation,
)
from aerossl.errors import ConfigError


def _range(op: str, name: str, value: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"augmentation '{op}': parameter '{name}' must be a pair [min, max], "
                          f"got {value!r}")
    a, b = (check_number(op, name, v, lo, hi) for v in value)
    if a > b:
        raise ConfigError(f"augmentation '{op}': parameter '{name}' must have min <= max")
    return a, b


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def _where(mask: Tensor, new: Tensor, x: Tensor) -> Tensor:
    return torch.where(AF.move(mask, x.device).view(-1, 1, 1, 1), new, x)


@register_augmentation("resized_crop")
class ResizedCrop(Augmentation):
    """Crop a random box of ``scale`` x the image area and aspect ratio in ``ratio`` (log-uniform),
    resized back to H×W (bilinear). Params: ``area``, ``log_ratio``, ``cy``, ``cx`` (B,) where
    ``cy``, ``cx`` in [0, 1) place the box inside the image."""

    def __init__(self, scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (0.75, 4 / 3)) -> None:
        self.scale = _range("resized_crop", "scale", scale, 1e-3, 1.0)
        self.ratio = _range("resized_crop", "ratio", ratio, 0.1, 10.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Area fraction uniform in ``scale``, log aspect ratio uniform, position uniform."""
        lr = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        return {"area": _uniform(batch_size, *self.scale, generator),
                "log_ratio": _uniform(batch_size, *lr, generator),
                "cy": torch.rand(batch_size, generator=generator, dtype=torch.float64),
                "cx": torch.rand(batch_size, generator=generator, dtype=torch.float64)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """One affine warp per image: output pixel p maps to ``diag(w/W, h/H) p + box centre``."""
        b, _, h, w = check_batch(x)
        area, ratio = params["area"].cpu(), params["log_ratio"].cpu().exp()
        bw = (area * ratio).sqrt().clamp(max=1.0) * w  # box width and height in pixels
        bh = (area / ratio).sqrt().clamp(max=1.0) * h
        cx = (bw / 2 + params["cx"].cpu() * (w - bw)) - w / 2  # box centre from image centre
        cy = (bh / 2 + params["cy"].cpu() * (h - bh)) - h / 2
        m = torch.zeros(b, 2, 3, dtype=torch.float64)
        m[:, 0, 0], m[:, 1, 1], m[:, 0, 2], m[:, 1, 2] = bw / w, bh / h, cx, cy
        return AF.affine(x, m)


@register_augmentation("color_jitter")
class ColorJitter(Augmentation):
    """With probability ``p``: brightness, contrast and saturation factors uniform in
    ``[1 - s, 1 + s]`` and a hue rotation in ``[-hue, hue]`` turns (YIQ rotation; 3 channels
    only), applied in that order. Params: ``apply``, ``brightness``, ``contrast``,
    ``saturation``, ``hue`` (B,)."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, p: float = 0.8) -> None:
        self.brightness = check_number("color_jitter", "brightness", brightness, 0.0, 1.0)
        self.contrast = check_number("color_jitter", "contrast", contrast, 0.0, 1.0)
        self.saturation = check_number("color_jitter", "saturation", saturation, 0.0, 1.0)
        self.hue = check_number("color_jitter", "hue", hue, 0.0, 0.5)
        self.p = check_number("color_jitter", "p", p, 0.0, 1.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Whether to jitter each image and its four factors."""
        n = batch_size
        return {"apply": torch.rand(n, generator=generator) < self.p,
                "brightness": _uniform(n, 1 - self.brightness, 1 + self.brightness, generator),
                "contrast": _uniform(n, 1 - self.contrast, 1 + self.contrast, generator),
                "saturation": _uniform(n, 1 - self.saturation, 1 + self.saturation, generator),
                "hue": _uniform(n, -self.hue, self.hue, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Jitter the selected images; the others are returned unchanged."""
        check_batch(x)
        y = AF.brightness(x, params["brightness"])
        y = AF.contrast(y, params["contrast"])
        y = AF.color(y, params["saturation"])
        if x.shape[1] == 3 and self.hue > 0:
            y = rotate_hue(y, params["hue"])
        return _where(params["apply"], y, x)


#: RGB -> YIQ (NTSC); hue is the angle of the (I, Q) chroma vector.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                    dtype=torch.float64)


def rotate_hue(x: Tensor, turns: Tensor) -> Tensor:
    """Rotate the hue of RGB images by ``turns`` (B,) of a full circle, in YIQ space."""
    angle = turns.cpu().double() * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(len(angle), 3, 3, dtype=torch.float64)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(_YIQ) @ rot @ _YIQ  # (B, 3, 3), per image
    m = AF.move(m.to(x.dtype), x.device)
    return torch.einsum("bij,bjhw->bihw", m, x).clamp_(0, 1)


@register_augmentation("random_grayscale")
class RandomGrayscale(Augmentation):
    """With probability ``p`` every channel is replaced by the grey level (luma for RGB, the
    channel mean otherwise). Params: ``apply`` (B,) bool."""

    def __init__(self, p: float = 0.2) -> None:
        self.p = check_number("random_grayscale", "p", p, 0.0, 1.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Whether each image turns grey."""
        return {"apply": torch.rand(batch_size, generator=generator) < self.p}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Grey images where ``apply``."""
        check_batch(x)
        return _where(params["apply"], AF.grey(x).expand_as(x), x)


@register_augmentation("gaussian_blur")
class GaussianBlur(Augmentation):
    """With probability ``p`` a Gaussian blur with ``sigma`` uniform in ``sigma`` (in units of
    10% of the image side, as SimCLR's kernel of 10% of the image), separable, reflect padding.
    Params: ``apply``, ``sigma`` (B,) (sigma in pixels is ``sigma * 0.1 * min(H, W) / 2``)."""

    def __init__(self, sigma: Sequence[float] = (0.1, 2.0), p: float = 0.5) -> None:
        self.sigma = _range("gaussian_blur", "sigma", sigma, 1e-3, 10.0)
        self.p = check_number("gaussian_blur", "p", p, 0.0, 1.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Whether to blur each image, and its sigma."""
        return {"apply": torch.rand(batch_size, generator=generator) < self.p,
                "sigma": _uniform(batch_size, *self.sigma, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Blur rows then columns with per-image kernels (one grouped convolution each)."""
        b, c, h, w = check_batch(x)
        radius = max(1, round(0.05 * min(h, w)))  # kernel of ~10% of the side
        if min(h, w) <= radius:
            return x.clone()
        sigma = params["sigma"].cpu() * radius / 2
        t = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        k = AF.move((k / k.sum(1, keepdim=True)).to(x.dtype), x.device)  # (B, K)
        k = k.repeat_interleave(c, dim=0)  # (B*C, K): one kernel per image-channel
        y = x.reshape(1, b * c, h, w)
        y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :],
                     groups=b * c)
        y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None],
                     groups=b * c)
        return _where(params["apply"], y.reshape(b, c, h, w).clamp_(0, 1), x)
