"""Geometric 'weak' augmentations (flip, rot90, crop) and cutout, all per-image and batched."""

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
from aerossl.errors import ConfigError


def _subset(mask: Tensor, device: torch.device) -> Tensor | None:
    """Indices (on ``device``) of the images selected by the CPU bool ``mask``; None if none."""
    idx = mask.cpu().nonzero().flatten()
    return AF.move(idx, device) if idx.numel() else None


@register_augmentation("flip")
class Flip(Augmentation):
    """Horizontal flip with probability ``p_h`` and vertical flip with probability ``p_v``,
    drawn independently per image. Params: ``hflip``, ``vflip`` (B,) bool."""

    def __init__(self, p_h: float = 0.5, p_v: float = 0.5) -> None:
        self.p_h = check_number("flip", "p_h", p_h, 0.0, 1.0)
        self.p_v = check_number("flip", "p_v", p_v, 0.0, 1.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """``hflip ~ Bernoulli(p_h)``, ``vflip ~ Bernoulli(p_v)`` per image."""
        return {"hflip": torch.rand(batch_size, generator=generator) < self.p_h,
                "vflip": torch.rand(batch_size, generator=generator) < self.p_v}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Flip width (dim 3) where ``hflip`` and height (dim 2) where ``vflip`` (one gather)."""
        check_batch(x)
        p = to_device(params, x.device)
        return AF.flip(x, p["hflip"], p["vflip"])


@register_augmentation("rot90")
class Rot90(Augmentation):
    """Rotation by ``k·90°`` counter-clockwise, ``k`` uniform in {0, 1, 2, 3} per image.

    Needs square images (H == W). Together with ``flip`` this draws one of the 8 dihedral
    transforms, all label-preserving for overhead imagery. Params: ``k`` (B,) int64.
    """

    def __init__(self) -> None:
        pass

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """``k`` uniform in {0, 1, 2, 3}."""
        return {"k": torch.randint(4, (batch_size,), generator=generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """``torch.rot90(x_b, k_b, dims=(2, 3))`` for each image, one call per value of k."""
        _, _, h, w = check_batch(x)
        if h != w:
            raise ConfigError(f"augmentation 'rot90' needs square images, got {h}×{w}")
        k = params["k"].cpu()
        out = x.clone()
        for turns in (1, 2, 3):
            idx = _subset(k == turns, x.device)
            if idx is not None:
                out[idx] = torch.rot90(x[idx], turns, dims=(2, 3))
        return out


@register_augmentation("crop")
class Crop(Augmentation):
    """Random crop back to H×W from the image reflect-padded by ``round(pad·H)`` rows and
    ``round(pad·W)`` columns on each side (FixMatch: pad=0.125, i.e. 4 px at 32×32).

    Params: ``top``, ``left`` (B,) float in [0, 1): the window offset as a fraction of the
    ``2·pad_px + 1`` possible offsets, so the same params fit any image size.
    """

    def __init__(self, pad: float = 0.125) -> None:
        self.pad = check_number("crop", "pad", pad, 0.0, 0.5)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """``top``, ``left`` uniform in [0, 1)."""
        return {"top": torch.rand(batch_size, generator=generator),
                "left": torch.rand(batch_size, generator=generator)}

    def pixels(self, h: int, w: int) -> tuple[int, int]:
        """Padding in pixels (rows, columns) for an H×W image."""
        return min(round(self.pad * h), h - 1), min(round(self.pad * w), w - 1)

    def offsets(self, params: Params, h: int, w: int) -> tuple[Tensor, Tensor]:
        """Integer window offsets (top in [0, 2·pad_h], left in [0, 2·pad_w]) on the CPU."""
        ph, pw = self.pixels(h, w)
        top = (params["top"].cpu() * (2 * ph + 1)).long().clamp_(0, 2 * ph)
        left = (params["left"].cpu() * (2 * pw + 1)).long().clamp_(0, 2 * pw)
        return top, left

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Gather the shifted window of the (virtually) reflect-padded image."""
        _, _, h, w = check_batch(x)
        ph, pw = self.pixels(h, w)
        if ph == 0 and pw == 0:
            return x.clone()
        top, left = self.offsets(params, h, w)
        return AF.crop_reflect(x, top, left, ph, pw)


@register_augmentation("cutout")
class Cutout(Augmentation):
    """Cutout: per image one square of side ``round(size·min(H, W))`` at a uniformly random
    centre, clipped at the borders, filled with ``fill`` (0.5 = grey, as FixMatch's 127).

    Params: ``cy``, ``cx`` (B,) float in [0, 1): the centre as a fraction of height/width.
    """

    def __init__(self, size: float = 0.5, fill: float = 0.5) -> None:
        self.size = check_number("cutout", "size", size, 0.0, 1.0)
        self.fill = check_number("cutout", "fill", fill, 0.0, 1.0)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Centre ``cy``, ``cx`` uniform in [0, 1)."""
        return {"cy": torch.rand(batch_size, generator=generator),
                "cx": torch.rand(batch_size, generator=generator)}

    def mask(self, params: Params, h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
        """B×1×H×W bool mask of the cut-out squares, built on ``device`` from coordinate grids."""
        side = round(self.size * min(h, w))
        y0 = AF.move((params["cy"].cpu() * h).floor().long() - side // 2, device)[:, None]
        x0 = AF.move((params["cx"].cpu() * w).floor().long() - side // 2, device)[:, None]
        ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
        in_y = (ys >= y0) & (ys < y0 + side)
        in_x = (xs >= x0) & (xs < x0 + side)
        return (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """``x`` with the masked pixels (all channels) set to ``fill``."""
        _, _, h, w = check_batch(x)
        return x.masked_fill(self.mask(params, h, w, x.device), self.fill)
