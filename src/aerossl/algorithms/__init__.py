"""Training methods, each a small module on the :class:`Algorithm` interface.

Importing this package registers every method (see :func:`register_algorithm`).
"""

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    LabeledMixParams,
    RunData,
    SSLParams,
    StepContext,
    StepOutput,
    ViewSpec,
    algorithm_names,
    get_algorithm,
    register_algorithm,
    sigmoid_rampup,
)
from aerossl.algorithms.mixing import mix_batch
from aerossl.algorithms.targets import soft_cross_entropy

# isort: split
# registration, after the base names the modules import
from aerossl.algorithms import (  # noqa: F401
    adamatch,
    ccssl,
    defixmatch,
    distill,
    fixmatch,
    flexmatch,
    freematch,
    label_propagation,
    lwf,
    mean_teacher,
    mixmatch,
    multilabel_fixmatch,
    noisy_student,
    pi_model,
    pseudo_label,
    simclr,
    simmatch,
    softmatch,
    spatiotemporal,
    supervised,
    uda,
    vat,
)

__all__ = [
    "Algorithm",
    "AlgorithmParams",
    "Batch",
    "LabeledMixParams",
    "RunData",
    "SSLParams",
    "StepContext",
    "StepOutput",
    "ViewSpec",
    "algorithm_names",
    "get_algorithm",
    "mix_batch",
    "register_algorithm",
    "sigmoid_rampup",
    "soft_cross_entropy",
]
