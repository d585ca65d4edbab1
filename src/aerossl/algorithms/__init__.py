"""Training methods, each a small module on the :class:`Algorithm` interface."""

import aerossl.algorithms.spatiotemporal  # noqa: F401  (registration)
from aerossl.algorithms import fixmatch, supervised  # noqa: F401  (registration)

# isort: split
from aerossl.algorithms import mean_teacher, pi_model, pseudo_label, uda, vat  # noqa: F401

# isort: split
from aerossl.algorithms import ccssl, flexmatch, freematch, mixmatch  # noqa: F401
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

# isort: split
from aerossl.algorithms import multilabel_fixmatch  # noqa: F401  (registration)

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
