"""The contrastive losses: NT-Xent (SimCLR) and its class-aware, weighted form (CCSSL).

For two views ``z1``, ``z2`` (B x d, L2-normalised) stacked into 2B embeddings z, each anchor a
is compared with the 2B - 1 others (its self-pair left out) at temperature t. With image-pair
weights ``W`` (B x B, extended to the 2B x 2B view pairs):

    L = mean_a [ -sum_b W_ab log softmax_b(z_a . z_b / t) / sum_b W_ab ]

NT-Xent is the case ``W = I``: each view's only positive is the other view of its image,

    L = mean_a -log softmax_{partner(a)}(z_a . z_b / t)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def projection_head(width: int, dim: int) -> nn.Sequential:
    """The two-layer MLP projection of CCSSL and SimMatch: ``width -> width -> ReLU -> dim``."""
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim))


def _similarities(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """``z_a . z_b / t`` of the 2B stacked views (self-pairs at -inf) and the self-pair mask."""
    z = torch.cat([z1, z2]).float()
    self_pair = torch.eye(len(z), dtype=torch.bool, device=z.device)
    return (z @ z.T / temperature).masked_fill(self_pair, float("-inf")), self_pair


def _partners(n: int, device: torch.device) -> Tensor:
    """Index of each of the 2n stacked views' partner view."""
    return torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(device)


def contrastive_loss(z1: Tensor, z2: Tensor, temperature: float,
                     weights: Tensor | None = None) -> Tensor:
    """The weighted contrastive loss above of L2-normalised views ``z1``, ``z2`` (B x d), with
    image-pair ``weights`` (B x B, diagonal 1); NT-Xent when ``weights`` is None (``W = I``)."""
    sim, self_pair = _similarities(z1, z2, temperature)
    if weights is None:
        return F.cross_entropy(sim, _partners(len(z1), sim.device))
    log_prob = (sim - torch.logsumexp(sim, dim=1, keepdim=True)).masked_fill(self_pair, 0.0)
    w = weights.repeat(2, 2).masked_fill(self_pair, 0.0)
    return (-(w * log_prob).sum(dim=1) / w.sum(dim=1)).mean()


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """NT-Xent of two batches of projections (paired by row; L2-normalised here) and the
    accuracy of picking the partner view."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    z1, z2 = z.split([len(z1), len(z2)])
    loss = contrastive_loss(z1, z2, temperature)
    with torch.no_grad():
        sim, _ = _similarities(z1, z2, temperature)
        accuracy = (sim.argmax(1) == _partners(len(z1), sim.device)).float().mean()
    return loss, accuracy
