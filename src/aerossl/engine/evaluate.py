"""Test-split evaluation: accuracy, loss, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EvalResult:
    """Evaluation of one set of weights on one index set."""

    accuracy: float
    loss: float
    confusion: np.ndarray  # (true, predicted) counts

    @property
    def per_class_accuracy(self) -> list[float]:
        """Recall of each class."""
        totals = self.confusion.sum(axis=1)
        return [float(c / t) if t else float("nan")
                for c, t in zip(np.diag(self.confusion), totals, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the format of eval.json)."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion_matrix": self.confusion.tolist(),
        }


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    indices: np.ndarray | torch.Tensor,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits (float32, CPU) of the uint8 images at ``indices``, in eval mode."""
    was_training = model.training
    model.eval()
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    out = []
    for start in range(0, len(idx), batch_size):
        part = idx[start : start + batch_size]
        x = images[part.to(images.device)].to(device, non_blocking=True).float().div_(255.0)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    num_classes: int,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> EvalResult:
    """Accuracy, mean cross-entropy and confusion matrix on the images at ``indices``."""
    logits = predict(model, images, indices, batch_size, device, amp_dtype, channels_last)
    y = labels.cpu()[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
    pred = logits.argmax(dim=1)
    confusion = torch.bincount(y * num_classes + pred, minlength=num_classes**2)
    return EvalResult(
        accuracy=float((pred == y).float().mean()) if len(y) else float("nan"),
        loss=float(F.cross_entropy(logits, y)) if len(y) else float("nan"),
        confusion=confusion.view(num_classes, num_classes).numpy(),
    )
