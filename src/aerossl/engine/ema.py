"""Exponential moving average of a network's weights (the weights that are evaluated)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """``ema = d * ema + (1 - d) * w`` for parameters; buffers (BN statistics) are copied.

    ``d = min(decay, (1 + k) / (10 + k))`` at update ``k`` (TensorFlow's warm-up of the decay), so
    that short runs are not evaluated with weights that are mostly the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """EMA update number ``step`` towards ``model``'s weights (fused over all tensors)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        ema_params = [p for p in self.module.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
