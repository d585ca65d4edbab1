"""Small pieces shared by the consistency-based methods (Pi-model, Mean Teacher, VAT, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field
from torch import nn

from aerossl.algorithms.base import SSLParams, StepContext, rampup


class RampedParams(SSLParams):
    """An unlabelled loss weight ``lambda_u`` ramped up by the sigmoid :func:`rampup`."""

    lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled loss after ramp-up")
    rampup_fraction: float = Field(
        0.4, ge=0, le=1,
        description="fraction of the training steps over which lambda_u ramps up (sigmoid)",
    )


def ramped_weight(params: RampedParams, ctx: StepContext) -> float:
    """``lambda_u * exp(-5 (1 - t)^2)``, ``t`` = step / (rampup_fraction * total_steps)."""
    length = round(params.rampup_fraction * ctx.total_steps)
    return params.lambda_u * rampup(ctx.step, length)


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch-norm layers normalise with the batch's statistics (as in training) but leave their
    running statistics and counters untouched: for forward passes whose inputs must not shape
    the statistics the network is evaluated with (MixMatch's label guessing, as in its
    reference code; VAT's perturbed inputs)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in layers]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(layers, saved, strict=True):
            m.track_running_stats = flag
