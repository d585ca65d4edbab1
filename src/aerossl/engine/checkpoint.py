"""Atomic checkpoint files (defined in :mod:`aerossl.checkpoint`, which loading a trained run
for inference uses without the engine)."""

from aerossl.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint, writing

__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint", "writing"]
