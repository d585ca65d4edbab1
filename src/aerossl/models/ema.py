"""Exponential moving averages of a network's weights (the engine's evaluated weights, Mean
Teacher's teacher): one update rule, on PyTorch's multi-tensor EMA
(:func:`torch.optim.swa_utils.get_ema_multi_avg_fn`)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model`` for the parameters (over all
    tensors at once); buffers (batch-norm statistics) are copied."""
    update = get_ema_multi_avg_fn(decay)
    update([p.detach() for p in average.parameters()], [p.detach() for p in model.parameters()],
           None)
    for b_avg, b in zip(average.buffers(), model.buffers(), strict=True):
        b_avg.copy_(b)


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

    def update(self, model: nn.Module, step: int) -> None:
        """EMA update number ``step`` towards ``model``'s weights."""
        ema_update(self.module, model, min(self.decay, (1 + step) / (10 + step)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
