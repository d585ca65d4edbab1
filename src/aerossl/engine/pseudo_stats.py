"""Scores of the pseudo-labels an algorithm returns, against the hidden labels the engine keeps.

Algorithms never see the labels of the unlabelled images: a step returns its pseudo-labels and
mask (:class:`~aerossl.batch.StepOutput`), and the engine logs how many were accepted and, for
inspection only, how many were right.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from aerossl.batch import Batch, StepOutput


@torch.no_grad()
def pseudo_label_stats(pseudo: Tensor, mask: Tensor, truth: Tensor | None) -> dict[str, Tensor]:
    """Mask rate and accuracy of the accepted class pseudo-labels (``truth``: hidden labels)."""
    out = {"mask_rate": mask.float().mean()}
    if truth is not None:
        accepted = mask.bool()
        n = accepted.sum()
        correct = (pseudo[accepted] == truth[accepted]).sum()
        out["pseudo_acc"] = correct / n if n > 0 else torch.tensor(float("nan"))
        out["pseudo_acc_all"] = (pseudo == truth).float().mean()
    return out


@torch.no_grad()
def multilabel_pseudo_label_stats(
    pseudo: Tensor, mask: Tensor, truth: Tensor | None
) -> dict[str, Tensor]:
    """Acceptance rates of positive and negative pseudo-labels (over all entries) and, with the
    hidden labels, the precision of each and the accuracy of all accepted."""
    accepted = mask.bool()
    pos, neg = accepted & (pseudo > 0.5), accepted & (pseudo <= 0.5)
    out = {"mask_rate": accepted.float().mean(), "pos_rate": pos.float().mean(),
           "neg_rate": neg.float().mean()}
    if truth is not None:
        true = truth > 0.5
        nan = torch.tensor(float("nan"))

        def share(hits: Tensor, total: Tensor) -> Tensor:
            n = total.sum()
            return hits.sum() / n if n > 0 else nan

        out["pseudo_precision_pos"] = share(pos & true, pos)
        out["pseudo_precision_neg"] = share(neg & ~true, neg)
        out["pseudo_acc"] = share(accepted & ((pseudo > 0.5) == true), accepted)
    return out


@torch.no_grad()
def pseudo_label_log(out: StepOutput, truth: Tensor | None) -> dict[str, Tensor]:
    """The values to log for one step's pseudo-labels and predictions: mask rate, pseudo-label
    accuracy (``pseudo_acc``, ``pseudo_acc_all``; multi-label: rates and precisions) and the
    accuracy of each named prediction. ``truth``: the hidden labels of the step's unlabelled
    images (None when unknown: rates only)."""
    log: dict[str, Tensor] = {}
    if out.pseudo_labels is not None and out.mask is not None:
        stats = multilabel_pseudo_label_stats if out.pseudo_labels.dim() == 2 else \
            pseudo_label_stats
        log.update(stats(out.pseudo_labels, out.mask, truth))
    if truth is not None:
        for name, pred in out.predictions.items():
            log[name] = (pred == truth).float().mean()
    return log


def step_log(out: StepOutput, batch: Batch, labels: Tensor) -> dict[str, Tensor | float]:
    """Everything one training step logs: its loss, the algorithm's values and the scores of
    its pseudo-labels against the hidden ``labels`` (all images' labels, indexed by
    ``batch.unlabeled_index``)."""
    index = batch.unlabeled_index
    truth = None if index is None else labels[index.to(labels.device)]
    return {"loss": out.loss.detach(), **out.log, **pseudo_label_log(out, truth)}


def hidden_indices(unlabeled: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """Dataset indices whose labels are hidden: unlabelled and not labelled."""
    return np.setdiff1d(unlabeled, labeled)


def visible_labels(labels: Tensor, unlabeled: np.ndarray, labeled: np.ndarray) -> Tensor:
    """A copy of ``labels`` with the hidden ones (see :func:`hidden_indices`) set to -1: what
    an algorithm's hooks may read."""
    out = labels.clone()
    out[torch.as_tensor(hidden_indices(unlabeled, labeled), dtype=torch.long)] = -1
    return out


@torch.no_grad()
def offline_pseudo_label_metrics(
    algorithm: nn.Module, labels: Tensor, unlabeled: np.ndarray, labeled: np.ndarray
) -> dict[str, float]:
    """``pseudo_label_acc``: accuracy against the hidden labels of the pseudo-labels a method
    assigned once to every unlabelled image (``algorithm.offline_pseudo_labels()``), over the
    images with a positive weight; empty for methods without them."""
    offline = algorithm.offline_pseudo_labels()
    if offline is None:
        return {}
    pseudo, weight = (t.cpu() for t in offline)
    rows = torch.as_tensor(hidden_indices(unlabeled, labeled), dtype=torch.long)
    used = weight[rows] > 0
    hidden = labels.cpu()[rows]
    right = pseudo[rows][used] == hidden[used]
    return {"pseudo_label_acc": float(right.float().mean()) if used.any() else float("nan")}
