"""Exponential moving average of the evaluated weights (defined in :mod:`aerossl.ema`, which
algorithms may import too)."""

from aerossl.ema import EMA, ema_update

__all__ = ["EMA", "ema_update"]
