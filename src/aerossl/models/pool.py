"""Global average pooling whose gradient keeps the input's memory format.

``F.adaptive_avg_pool2d(h, 1)``'s backward hands the layer below an expanded (stride-0) gradient
in the default layout. Under ``channels_last`` that layout mismatch sends the last batch norm's
backward down a generic path, over 10x slower than its vectorised channels-last kernel: 5-9 %
of a pretrained top's CPU training step (``benchmarks/pool_backward.py``). The
forward here is ``adaptive_avg_pool2d`` itself; the backward returns the same values, laid out
like the input.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["global_avg_pool"]


def _pool(h: Tensor) -> Tensor:
    return F.adaptive_avg_pool2d(h, 1).flatten(1)


class _GlobalAvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Tensor) -> Tensor:
        ctx.shape = h.shape
        ctx.channels_last = h.dim() == 4 and not h.is_contiguous() and h.is_contiguous(
            memory_format=torch.channels_last)
        return _pool(h)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        n, c, height, width = ctx.shape
        expanded = (grad / (height * width))[:, :, None, None].expand(n, c, height, width)
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        return expanded.contiguous(memory_format=fmt)


def global_avg_pool(h: Tensor) -> Tensor:
    """Mean over the spatial dimensions of ``h`` (B, C, H, W) -> (B, C). Without autograd
    (evaluation, export, inference) it is ``adaptive_avg_pool2d`` alone."""
    if torch.is_grad_enabled() and h.requires_grad:
        return _GlobalAvgPool.apply(h)
    return _pool(h)
