"""Training methods, each a small module on the :class:`Algorithm` interface."""

from aerossl.algorithms import fixmatch, supervised  # noqa: F401  (registration)
from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    StepContext,
    StepOutput,
    ViewSpec,
    algorithm_names,
    get_algorithm,
    pseudo_label_stats,
    register_algorithm,
)

__all__ = [
    "Algorithm",
    "AlgorithmParams",
    "Batch",
    "StepContext",
    "StepOutput",
    "ViewSpec",
    "algorithm_names",
    "get_algorithm",
    "pseudo_label_stats",
    "register_algorithm",
]
