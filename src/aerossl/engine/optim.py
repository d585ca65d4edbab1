"""The optimisation: SGD with Nesterov momentum over the trainable parameters, weight decay on
convolution and linear weights only, a backbone learning-rate scale, warm-up and FixMatch's cosine
decay."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from aerossl.config import Config
from aerossl.engine.transfer import backbone_parameter_ids


def lr_factor(step: int, cfg: Config) -> float:
    """Linear warm-up, then FixMatch's cosine decay ``cos(7 pi k / (16 K))`` (or constant)."""
    t = cfg.train
    if step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    if t.lr_schedule == "constant":
        return 1.0
    return math.cos(7 * math.pi * step / (16 * t.steps))


def param_groups(
    module: nn.Module, weight_decay: float, lr: float, scaled: set[int] | None = None,
    lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Weight decay on weights of convolutions and linear layers, not on biases or norms;
    parameters whose id is in ``scaled`` (the backbone) get learning rate ``lr * lr_scale``."""
    groups: dict[tuple[bool, bool], list] = {  # (decayed, scaled); the first two always exist
        (d, s): [] for s in (False, True) for d in (True, False)}
    for p in module.parameters():
        if p.requires_grad:
            groups[(p.ndim > 1, lr_scale != 1.0 and id(p) in (scaled or ()))].append(p)
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0,
             "lr": lr * lr_scale if scale else lr}
            for (decay, scale), ps in groups.items() if ps or not scale]


def build_optimizer(
    module: nn.Module, cfg: Config
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (Nesterov momentum) over the trainable parameters, with the configured schedule."""
    t = cfg.train
    backbone = backbone_parameter_ids(module.model) if hasattr(module, "model") else set()
    optimizer = torch.optim.SGD(
        param_groups(module, t.weight_decay, t.lr, backbone, t.backbone_lr_scale),
        lr=t.lr, momentum=t.momentum,
        nesterov=t.nesterov and t.momentum > 0,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: lr_factor(k, cfg))
