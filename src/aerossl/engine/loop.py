"""Pieces of the training loop: stopping on a signal after the current step, the statistics
of a batch that gave a non-finite loss, and averaging logged values over a window."""

from __future__ import annotations

import signal
import threading
from typing import Any

import torch

from aerossl.batch import Batch


class StopOnSignal:
    """Turns SIGINT/SIGTERM into a flag, so the loop finishes its step and checkpoints.

    A second signal restores the default behaviour (a second Ctrl-C stops at once).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def batch_statistics(batch: Batch) -> dict[str, float]:
    """Per view: min, max, mean and std of the finite values, and how many are not finite."""
    stats: dict[str, float] = {}
    for group, views in (("labeled", batch.labeled), ("unlabeled", batch.unlabeled)):
        for name, x in views.items():
            x = x.detach().float()
            finite = x[torch.isfinite(x)]
            key = f"{group}/{name}"
            stats[f"{key}/nonfinite"] = float(x.numel() - finite.numel())
            if finite.numel():
                stats.update({f"{key}/min": float(finite.min()), f"{key}/max": float(finite.max()),
                              f"{key}/mean": float(finite.mean()),
                              f"{key}/std": float(finite.std()) if finite.numel() > 1 else 0.0})
    return stats


def mean_window(window: dict[str, list]) -> dict[str, float]:
    """Average each logged value over the window (NaNs ignored)."""
    out = {}
    for k, vals in window.items():
        x = torch.tensor([float(v) for v in vals], dtype=torch.float64)
        out[k] = float(x.nanmean()) if bool(torch.isfinite(x).any()) else float("nan")
    return out
