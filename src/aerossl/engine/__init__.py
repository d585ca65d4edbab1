"""The training engine: run folders, the training loop, evaluation, checkpoints and reports."""

from aerossl.engine.trainer import RunResult, Trainer

__all__ = ["RunResult", "Trainer"]
