"""Test-split evaluation: logits of the test images, scored by the run's task (accuracy and
confusion matrix, or mAP and F1 for multi-label runs; see :mod:`aerossl.tasks`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aerossl.tasks import EvalResult, Task, get_task

__all__ = ["EvalResult", "evaluate_model", "predict"]


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
    """Logits (float32, CPU) of the uint8 images (or float bank inputs) at ``indices``, in
    eval mode."""
    was_training = model.training
    model.eval()
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    out = []
    for start in range(0, len(idx), batch_size):
        part = idx[start : start + batch_size]
        x = images[part.to(images.device)].to(device, non_blocking=True)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
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
    task: Task | None = None,
) -> EvalResult:
    """The task's metrics (default: accuracy, mean cross-entropy and confusion matrix) on the
    images at ``indices``."""
    logits = predict(model, images, indices, batch_size, device, amp_dtype, channels_last)
    y = labels.cpu()[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
    if not len(y):
        logits = logits.reshape(0, num_classes)
    return (task or get_task("multiclass")).evaluate(logits, y)
