"""Training methods, each a small module on the :class:`Algorithm` interface."""

from aerossl.algorithms import fixmatch, supervised  # noqa: F401  (registration)
from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    LabeledMixParams,
    SSLParams,
    StepContext,
    StepOutput,
    ViewSpec,
    algorithm_names,
    get_algorithm,
    mix_batch,
    pseudo_label_stats,
    register_algorithm,
    sigmoid_rampup,
    soft_cross_entropy,
)

__all__ = [
    "Algorithm",
    "AlgorithmParams",
    "Batch",
    "LabeledMixParams",
    "SSLParams",
    "StepContext",
    "StepOutput",
    "ViewSpec",
    "algorithm_names",
    "get_algorithm",
    "mix_batch",
    "pseudo_label_stats",
    "register_algorithm",
    "sigmoid_rampup",
    "soft_cross_entropy",
]

# teacher-student methods (registration)
from aerossl.algorithms import distill, noisy_student, simclr  # noqa: F401
