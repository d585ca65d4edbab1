"""A linear classifier fitted on fixed features: multinomial logistic regression (L-BFGS, L2
penalty) on standardised features, returned as one ``nn.Linear`` on the raw features.

Used by SimCLR's linear probe and by ``model.head_init: probe``, which starts fine-tuning from
the probe's head (LP-FT: Kumar et al., "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution", ICLR 2022).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fit_linear_head(features: Tensor, labels: Tensor, num_classes: int, l2: float = 1e-2,
                    steps: int = 100) -> nn.Linear:
    """Fit ``softmax(W z + b)`` to ``labels`` on ``z``, the ``features`` standardised per
    dimension (their mean and std), minimising the mean cross-entropy plus ``l2 * ||W||^2``;
    returns a float64 ``nn.Linear`` on the raw features (the standardisation folded in:
    ``W / std`` and ``b - W (mean / std)``)."""
    f = features.detach().double().cpu()
    y = labels.detach().long().cpu()
    mean, std = f.mean(0), f.std(0, unbiased=False).clamp_min(1e-6)
    z = (f - mean) / std
    w = torch.zeros(f.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    head = nn.Linear(f.shape[1], num_classes, dtype=torch.float64)
    with torch.no_grad():
        scaled = w.detach() / std[:, None]
        head.weight.copy_(scaled.T)
        head.bias.copy_(b.detach() - mean @ scaled)
    return head.requires_grad_(False)
