"""Mixing a batch with a shuffled copy of itself: MixUp (Zhang et al. 2018) and CutMix (Yun et
al. 2019), and the ``labeled_mix`` option that applies one of them to the labelled batch of any
method (a component built from the method's parameters, :class:`LabeledMix`).

    lam ~ Beta(alpha, alpha),  perm a random permutation of the batch
    MixUp:  x' = lam x + (1 - lam) x[perm],            t' = lam t + (1 - lam) t[perm]
    CutMix: x' = x with a box of area (1 - lam) pasted from x[perm], t' mixed by the area used
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

MixMode = Literal["none", "mixup", "cutmix"]


def mixup(x: Tensor, targets: Tensor, alpha: float,
          keep_larger: bool = False) -> tuple[Tensor, Tensor, float]:
    """MixUp of a batch with a shuffled copy, targets mixed with the same ``lam`` and
    permutation. ``keep_larger`` uses ``max(lam, 1 - lam)`` so each mixed row stays closest to
    itself (MixMatch). Returns ``(x', targets', lam)``."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    if keep_larger:
        lam = max(lam, 1.0 - lam)
    perm = torch.randperm(len(x), device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm], lam


def mix_batch(x: Tensor, targets: Tensor, mode: str, alpha: float) -> tuple[Tensor, Tensor]:
    """MixUp (:func:`mixup`) or CutMix (pasted box) of a batch with a shuffled copy.

    One coefficient ``lam ~ Beta(alpha, alpha)`` per batch; for CutMix the targets are mixed by
    the pasted area actually used.
    """
    if mode == "mixup":
        return mixup(x, targets, alpha)[:2]
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), device=x.device)
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    mixed = x.clone()
    mixed[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, lam * targets + (1 - lam) * targets[perm]


class LabeledMix(nn.Module):
    """The ``labeled_mix`` option: MixUp or CutMix of the labelled inputs and their soft targets
    in training mode (``mode='none'``: unchanged).

    Called as ``mix(x, targets, meta)``; per-image ``meta`` (B x D, e.g. encoded metadata) is
    mixed with the same coefficient and permutation as the targets. Returns
    ``(x, targets, meta)``.
    """

    def __init__(self, mode: MixMode = "none", alpha: float = 1.0) -> None:
        super().__init__()
        self.mode = mode
        self.alpha = alpha

    def forward(self, x: Tensor, targets: Tensor, meta: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor | None]:
        if self.mode == "none" or not self.training:
            return x, targets, meta
        if meta is None:
            x, targets = mix_batch(x, targets, self.mode, self.alpha)
            return x, targets, None
        k = targets.shape[1]
        x, mixed = mix_batch(x, torch.cat([targets, meta.to(targets.dtype)], 1), self.mode,
                             self.alpha)
        return x, mixed[:, :k], mixed[:, k:].to(meta.dtype)
