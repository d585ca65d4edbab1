"""Label propagation over a k-nearest-neighbour graph of features (Zhou et al., NeurIPS 2003).

The graph and the linear solve follow Iscen et al., "Label Propagation for Deep Semi-supervised
Learning" (CVPR 2019): a sparse cosine k-NN graph whose edges weigh ``max(s, 0)**power``, made
symmetric and normalised, ``W_n = D^-1/2 (A + A^T) D^-1/2``; the labelled images' one-hot rows
``Y`` (each class's column summing to 1) are spread by solving ``(I - alpha W_n) Z = Y`` with
the conjugate-gradient method. Everything is plain PyTorch on the features' device, sparse, so
a pool of tens of thousands of images costs seconds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def knn_graph(features: Tensor, k: int, power: float = 3.0, chunk: int = 2048) -> Tensor:
    """The symmetric, normalised cosine k-NN graph ``W_n`` of ``features`` (N x D) as a sparse
    (N x N, float64) tensor; no self-loops."""
    n = len(features)
    k = min(k, n - 1)
    if k < 1:
        raise ValueError(f"a k-NN graph needs at least 2 points, got {n}")
    x = torch.nn.functional.normalize(features.float(), dim=1)
    rows, cols, weights = [], [], []
    for start in range(0, n, chunk):
        sim = x[start:start + chunk] @ x.T
        sim[torch.arange(len(sim)), torch.arange(start, start + len(sim))] = -math.inf
        value, index = sim.topk(k, dim=1)
        rows.append(torch.arange(start, start + len(sim)).repeat_interleave(k))
        cols.append(index.reshape(-1))
        weights.append(value.clamp_min(0).double().reshape(-1) ** power)
    r, c, w = torch.cat(rows), torch.cat(cols), torch.cat(weights)
    graph = torch.sparse_coo_tensor(torch.stack([torch.cat([r, c]), torch.cat([c, r])]),
                                    torch.cat([w, w]), (n, n),
                                    check_invariants=True).coalesce()  # A + A^T
    index, value = graph.indices(), graph.values()
    degree = torch.zeros(n, dtype=torch.float64).index_add_(0, index[0], value)
    scale = degree.clamp_min(1e-12).rsqrt()
    return torch.sparse_coo_tensor(index, value * scale[index[0]] * scale[index[1]],
                                   (n, n), check_invariants=True).coalesce()


def propagate(graph: Tensor, seeds: Tensor, alpha: float = 0.99, tol: float = 1e-6,
              max_iter: int = 200) -> Tensor:
    """``Z`` solving ``(I - alpha W_n) Z = seeds`` (N x C, one system per column) by conjugate
    gradients; ``graph`` is :func:`knn_graph`'s ``W_n``."""
    b = seeds.double()
    z = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(0)
    stop = tol * tol * torch.clamp_min((b * b).sum(0), 1e-30)
    for _ in range(max_iter):
        ap = p - alpha * torch.sparse.mm(graph, p)
        step = rs / torch.clamp_min((p * ap).sum(0), 1e-30)
        z += step * p
        r -= step * ap
        rs_new = (r * r).sum(0)
        if bool((rs_new <= stop).all()):
            break
        p = r + (rs_new / torch.clamp_min(rs, 1e-30)) * p
        rs = rs_new
    return z


def propagated_scores(features: Tensor, labeled: Tensor, labels: Tensor, num_classes: int,
                      k: int = 10, alpha: float = 0.99, power: float = 3.0, tol: float = 1e-6,
                      max_iter: int = 200) -> Tensor:
    """The class scores (N x C, float64, non-negative, not normalised) that the rows
    ``labeled`` of ``features`` (their classes ``labels``) spread to every row over
    :func:`knn_graph`; every class seeds the same mass."""
    graph = knn_graph(features, k, power)
    seeds = torch.zeros(len(features), num_classes, dtype=torch.float64)
    seeds[labeled, labels] = 1.0
    seeds /= seeds.sum(0, keepdim=True).clamp_min(1.0)  # every class seeds the same mass
    return propagate(graph, seeds, alpha, tol, max_iter).clamp_min(0)


def propagated_labels(features: Tensor, labeled: Tensor, labels: Tensor, num_classes: int,
                      k: int = 10, alpha: float = 0.99, power: float = 3.0
                      ) -> tuple[Tensor, Tensor]:
    """Labels spread from the rows ``labeled`` (their classes ``labels``) of ``features`` to
    every row: the arg-max class of each row's propagated scores and its certainty
    ``1 - H(z) / log C`` (``z``: the scores normalised to sum 1; 0 for a row no label reaches).
    The labelled rows keep their own labels."""
    scores = propagated_scores(features, labeled, labels, num_classes, k, alpha, power)
    total = scores.sum(1, keepdim=True)
    reached = total.squeeze(1) > 1e-12
    z = scores / total.clamp_min(1e-30)
    entropy = -(z * torch.log(z.clamp_min(1e-30))).sum(1)
    certainty = torch.where(reached, 1 - entropy / math.log(max(num_classes, 2)),
                            torch.zeros_like(entropy)).clamp(0, 1)
    pred = z.argmax(1)
    pred[labeled] = labels
    certainty[labeled] = 1.0
    return pred, certainty.float()
