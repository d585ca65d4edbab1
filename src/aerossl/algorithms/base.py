"""The one interface through which a training method plugs into the engine.

An algorithm declares the augmented views it needs (``views``) and turns one batch of those
views into a loss (``training_step``). The engine owns everything else: data order, augmentation,
the optimiser, schedules, EMA, evaluation, checkpoints and logging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from aerossl.errors import ConfigError


class AlgorithmParams(BaseModel):
    """Base of every algorithm's parameter schema (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ViewSpec:
    """Which augmentation pipeline produces each named view of the labelled/unlabelled batch."""

    labeled: dict[str, str]
    unlabeled: dict[str, str] = field(default_factory=dict)

    def pipelines(self) -> set[str]:
        """Names of every pipeline these views use."""
        return set(self.labeled.values()) | set(self.unlabeled.values())


@dataclass
class Batch:
    """One training step's data, already augmented and on the training device.

    ``unlabeled_true`` holds the hidden labels of the unlabelled images where the benchmark knows
    them. It exists for logging pseudo-label accuracy only and must never enter a loss.
    """

    labeled: dict[str, Tensor]
    labels: Tensor
    unlabeled: dict[str, Tensor] = field(default_factory=dict)
    unlabeled_true: Tensor | None = None


@dataclass(frozen=True)
class StepContext:
    """Where training stands, for ramp-ups and annealing."""

    step: int
    total_steps: int

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.total_steps))


@dataclass
class StepOutput:
    """The loss to minimise and the values to log (scalars; averaged by the engine)."""

    loss: Tensor
    log: dict[str, Tensor | float] = field(default_factory=dict)


class Algorithm(nn.Module):
    """Base class of training methods.

    Subclasses set ``name``, a nested ``Params`` schema, ``views`` and ``training_step``. Modules
    an algorithm adds (projection heads, teachers) are attributes, so they are checkpointed and,
    when trainable, optimised with the model.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[AlgorithmParams]] = AlgorithmParams

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.p = params
        self.num_classes = num_classes

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        """The views a step needs; the default is one weak view of labelled images."""
        return ViewSpec(labeled={"weak": "weak"})

    @classmethod
    def pipelines(cls, params: AlgorithmParams) -> set[str]:
        """Names of the augmentation pipelines the config must declare."""
        return cls.views(params).pipelines()

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """Compute the loss of one step."""
        raise NotImplementedError

    def on_step_end(self, ctx: StepContext) -> None:
        """Hook after the optimiser step (e.g. to update a teacher)."""

    def eval_model(self) -> nn.Module:
        """The network that is evaluated, checkpointed as the result and exported."""
        return self.model


_REGISTRY: dict[str, type[Algorithm]] = {}


def register_algorithm(name: str):
    """Class decorator adding an algorithm to the registry under ``name``."""

    def deco(cls: type[Algorithm]) -> type[Algorithm]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def algorithm_names() -> list[str]:
    """Registered algorithm names."""
    return sorted(_REGISTRY)


def get_algorithm(name: str) -> type[Algorithm]:
    """Look an algorithm up by name; an unknown name is a ConfigError with a suggestion."""
    if name not in _REGISTRY:
        from aerossl.config import suggest

        raise ConfigError(f"unknown algorithm '{name}'{suggest(name, algorithm_names())} "
                          f"(available: {', '.join(algorithm_names())})")
    return _REGISTRY[name]


@torch.no_grad()
def pseudo_label_stats(pseudo: Tensor, mask: Tensor, truth: Tensor | None) -> dict[str, Tensor]:
    """Mask rate and accuracy of the accepted pseudo-labels (truth used for logging only)."""
    out = {"mask_rate": mask.float().mean()}
    if truth is not None:
        accepted = mask.bool()
        n = accepted.sum()
        correct = (pseudo[accepted] == truth[accepted]).sum()
        out["pseudo_acc"] = correct / n if n > 0 else torch.tensor(float("nan"))
        out["pseudo_acc_all"] = (pseudo == truth).float().mean()
    return out
