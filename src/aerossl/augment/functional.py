"""Batched, channel-generic image operations behind the augmentations.

Every function takes a float batch ``x`` (B×C×H×W, values in [0, 1], any C >= 1, any device)
and per-image parameters as tensors of shape (B,) on ``x.device``; it returns a new tensor of
the same shape, dtype and device with values in [0, 1] and never loops over images. Colour
operations follow PIL's ``ImageEnhance``/``ImageOps`` definitions, with 8-bit quantisation
only where the operation is defined on 8-bit levels (Equalize, Posterize).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA_601 = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights (PIL's ``convert("L")``) used as grey level of 3-channel images."""


def move(t: Tensor, device: torch.device | str) -> Tensor:
    """``t`` on ``device``; CPU → CUDA copies go through pinned memory and are non-blocking,
    so moving the (small) parameters does not wait for the GPU to finish queued work."""
    device = torch.device(device)
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _per_image(v: Tensor, x: Tensor) -> Tensor:
    """A per-image (B,) parameter as a B×1×1×1 tensor of ``x``'s dtype and device."""
    return move(v, x.device).to(x.dtype).view(-1, 1, 1, 1)


def quantize(x: Tensor) -> Tensor:
    """8-bit levels of ``x``: ``round(255·x)`` clamped to 0..255, as int64."""
    return (x * 255).round_().clamp_(0, 255).long()


def grey(x: Tensor) -> Tensor:
    """Per-pixel grey level (B×1×H×W).

    For C == 3: ITU-R 601 luma 0.299·R + 0.587·G + 0.114·B (as PIL); for any other channel
    count (1 band, 13-band multispectral, ...): the mean over channels.
    """
    if x.shape[1] == 3:
        r, g, b = LUMA_601
        return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]
    return x.mean(1, keepdim=True)


def blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL enhance blend ``degenerate + f·(x − degenerate)`` clamped to [0, 1].

    ``f = 1`` is the identity, ``f = 0`` gives ``degenerate``, ``f > 1`` extrapolates.
    """
    f = _per_image(factor, x)
    return (degenerate + f * (x - degenerate)).clamp_(0, 1)


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Brightness: ``clamp(f·x)`` (blend with black)."""
    return (x * _per_image(factor, x)).clamp_(0, 1)


def color(x: Tensor, factor: Tensor) -> Tensor:
    """Colour (saturation): blend with the grey image (see ``grey``); identity for C == 1."""
    return blend(grey(x).expand_as(x), x, factor)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Contrast: blend with a constant image at the image's mean grey level (see ``grey``)."""
    return blend(grey(x).mean((1, 2, 3), keepdim=True).expand_as(x), x, factor)


def sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """Sharpness: blend with PIL's SMOOTH-filtered image (3×3 kernel [1 1 1; 1 5 1; 1 1 1]/13).

    As in PIL, the one-pixel border of the smoothed image is the original image. The filter is
    computed as a separable 3×3 box sum plus 4× the centre (much faster than a conv on CPU).
    """
    h, w = x.shape[2:]
    if h < 3 or w < 3:
        return x.clone()
    rows = x[..., :-2] + x[..., 1:-1] + x[..., 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = (box + 4 * x[..., 1:-1, 1:-1]) / 13
    return blend(degenerate, x, factor)


def auto_contrast(x: Tensor) -> Tensor:
    """AutoContrast per image and channel: ``(x − min) / (max − min)``; constant channels kept."""
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    span = hi - lo
    out = ((x - lo) / span.clamp_min(torch.finfo(x.dtype).tiny)).clamp_(0, 1)
    return torch.where(span > 0, out, x)


def equalize(x: Tensor) -> Tensor:
    """Histogram equalisation per image and channel on 256 8-bit levels (PIL's algorithm).

    With ``hist`` the channel's histogram and ``last`` the count of its highest occupied level,
    ``step = (H·W − last) // 256`` and level ``i`` maps to ``(step//2 + Σ_{j<i} hist[j]) // step``
    (clipped to 255). Channels with ``step == 0`` (e.g. constant ones) are left unchanged.
    Histograms of all image-channels are built at once with ``scatter_add_``.
    """
    b, c, h, w = x.shape
    q = quantize(x).view(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, q, torch.ones((), dtype=torch.long, device=x.device).expand_as(q))
    levels = torch.arange(256, device=x.device)
    top = torch.where(hist > 0, levels, 0).amax(1, keepdim=True)  # highest occupied level
    step = (h * w - hist.gather(1, top)) // 256
    before = hist.cumsum(1) - hist
    lut = ((step // 2 + before) // step.clamp_min(1)).clamp_(max=255).to(x.dtype).div_(255)
    out = lut.gather(1, q).view(b, c, h, w)
    return torch.where((step > 0).view(b, c, 1, 1), out, x)


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the top ``bits`` (1..8) bits of each 8-bit level; ``bits == 8`` is the identity.

    ``floor(q / 2^s)·2^s / 255`` with ``q = round(255·x)`` and ``s = 8 − bits`` (float
    arithmetic, exact on integer levels).
    """
    shift = 8 - _per_image(bits, x)
    step = torch.exp2(shift)
    out = (x * 255).round_().clamp_(0, 255).div_(step).floor_().mul_(step).div_(255)
    return torch.where(shift > 0, out, x)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """Solarize: ``1 − x`` where ``x >= threshold``, else ``x`` (threshold > 1: identity)."""
    inverted = (x >= _per_image(threshold, x)).to(x.dtype)
    return x.addcmul(inverted, 1 - 2 * x).clamp_(0, 1)


def affine(x: Tensor, matrix: Tensor) -> Tensor:
    """Warp each image by an affine map given in centred pixel coordinates.

    ``matrix`` (B×2×3) maps an output pixel position ``p = (col, row)`` measured from the image
    centre to the input position ``A·p + t`` that is sampled (bilinear, reflection padding,
    ``align_corners=False``); it is converted on its own device (keep it on the CPU). The
    identity reproduces ``x`` up to rounding; the rotation ``[[cos, −sin], [sin, cos]]`` by
    +90° equals ``torch.rot90(x, 1, (2, 3))``.
    """
    b, _, h, w = x.shape
    m = matrix.to(torch.float64)
    # normalised coords n = S⁻¹ p with S = diag(W/2, H/2): theta = S⁻¹ A S, t_n = S⁻¹ t
    scale = torch.tensor([[1.0, h / w], [w / h, 1.0]], dtype=m.dtype, device=m.device)
    shift = torch.tensor([2.0 / w, 2.0 / h], dtype=m.dtype, device=m.device)
    theta = torch.cat([m[:, :, :2] * scale, (m[:, :, 2] * shift).unsqueeze(2)], dim=2)
    grid = F.affine_grid(move(theta.to(x.dtype), x.device), [b, 1, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0, 1)


def reflect_index(i: Tensor, n: int) -> Tensor:
    """Map indices in [−(n−1), 2n−2] into [0, n−1] as ``F.pad(mode="reflect")`` does."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def gather_pixels(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``out[b, c, i, j] = x[b, c, rows[b, i], cols[b, j]]`` with one gather.

    ``rows`` (B×H') and ``cols`` (B×W') are int64 source indices on ``x.device``.
    """
    b, c, h, w = x.shape
    hh, ww = rows.shape[1], cols.shape[1]
    index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, hh * ww).expand(b, c, hh * ww)
    return x.reshape(b, c, h * w).gather(2, index).view(b, c, hh, ww)


def flip(x: Tensor, horizontal: Tensor, vertical: Tensor) -> Tensor:
    """Mirror the width axis where ``horizontal`` and the height axis where ``vertical``
    ((B,) bool), as a single gather."""
    _, _, h, w = x.shape
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    rows = torch.where(move(vertical, x.device)[:, None], h - 1 - i, i)
    cols = torch.where(move(horizontal, x.device)[:, None], w - 1 - j, j)
    return gather_pixels(x, rows, cols)


def crop_reflect(x: Tensor, top: Tensor, left: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """H×W window at (``top``, ``left``) of ``x`` reflect-padded by (``pad_h``, ``pad_w``).

    Equals ``F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")[b, :, top:top+H,
    left:left+W]`` per image, computed with one gather (no padded copy is materialised).
    ``top``/``left`` are (B,) int tensors in [0, 2·pad_h] and [0, 2·pad_w].
    """
    _, _, h, w = x.shape
    top = move(top, x.device).long()
    left = move(left, x.device).long()
    rows = reflect_index(top[:, None] - pad_h + torch.arange(h, device=x.device), h)
    cols = reflect_index(left[:, None] - pad_w + torch.arange(w, device=x.device), w)
    return gather_pixels(x, rows, cols)
