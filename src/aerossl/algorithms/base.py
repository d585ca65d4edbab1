"""The one interface through which a training method plugs into the engine.

An algorithm declares the augmented views it needs (``views``) and turns one batch of those
views into a loss (``training_step``). The engine owns everything else: data order, augmentation,
the optimiser, schedules, EMA, evaluation, checkpoints and logging.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aerossl.algorithms.mixing import LabeledMix
from aerossl.algorithms.targets import DistributionAlignment, EntropyMinimisation, NoAlignment
from aerossl.batch import Batch, StepContext, StepOutput, ViewSpec
from aerossl.errors import ConfigError
from aerossl.tasks import Task, get_task

NetworkLoader = Callable[[str, str], tuple[nn.Module, dict[str, Any]]]
"""``(source, checkpoint) -> (network, info)``: a trained run's network (eval mode), for a
teacher or an original network; ``source`` is a run folder or its ``checkpoints/<name>.pt``.
The engine passes :func:`aerossl.runs.loader.load_source_network`; algorithms never open run folders
themselves."""


@dataclass
class Options:
    """The option components of a method, built from its parameters (each may be off)."""

    labeled_mix: nn.Module = field(default_factory=LabeledMix)
    align: nn.Module = field(default_factory=NoAlignment)
    entropy: nn.Module = field(default_factory=EntropyMinimisation)


class AlgorithmParams(BaseModel):
    """Base of every algorithm's parameter schema (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    def options(self, num_classes: int) -> Options:
        """The option components these parameters choose (here: all off)."""
        return Options()


@dataclass
class RunData:
    """What the hooks :meth:`Algorithm.prepare` and :meth:`Algorithm.extra_metrics` may read:
    the run's cached images (uint8 N×C×H×W), labels and split indices, and the engine's batched
    eval-mode inference ``predict(module, indices) -> outputs`` (float32, CPU).

    ``labels`` are those of the labelled and test images; the hidden labels of the unlabelled
    images are -1 (the engine keeps them, see :meth:`Algorithm.offline_pseudo_labels`).
    ``evaluated`` is the network the engine evaluates (its EMA copy when ``train.ema`` is on),
    None where the engine has none apart from the trained one.
    """

    images: Tensor
    labels: Tensor
    labeled: np.ndarray
    unlabeled: np.ndarray
    test: np.ndarray
    predict: Callable[[nn.Module, np.ndarray], Tensor]
    classes: list[str] = field(default_factory=list)
    evaluated: nn.Module | None = None

    def features(self, network: nn.Module, indices: np.ndarray) -> Tensor:
        """Pooled features ``network.forward_features(x)`` of the images at ``indices``."""
        return self.predict(Features(network), indices)


class Features(nn.Module):
    """``network.forward_features`` as a module's forward (to batch it through ``predict``)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.train(network.training)  # so that predict() restores the network's own mode

    def forward(self, x: Tensor) -> Tensor:
        return self.network.forward_features(x)


class Algorithm(nn.Module):
    """Base class of training methods.

    Subclasses set ``name``, a nested ``Params`` schema, ``views`` and ``training_step``. Modules
    an algorithm adds (projection heads, teachers) are attributes, so they are checkpointed and,
    when trainable, optimised with the model. State that must survive a resume (running
    averages, per-sample statistics) is kept in buffers.

    ``num_images`` is the size of the whole dataset: ``Batch.unlabeled_index`` indexes into it,
    for methods that keep per-image state (FlexMatch). ``meta_dim`` is the width of
    ``Batch.labeled_meta``/``unlabeled_meta`` (0 without metadata), for methods that use it.

    ``task`` (:mod:`aerossl.tasks`) turns labels into targets and gives the supervised loss;
    ``tasks`` lists the kinds of labels a method supports (``multiclass``, ``multilabel``).

    With a frozen bottom and the view bank, the model's inputs are the bank's cached feature
    maps, not images. A method whose step needs images (a teacher network on images, a
    perturbation in pixel units) sets ``needs_images``; the engine then recomputes the frozen
    bottom instead of using the bank.

    A transfer method that needs the run it fine-tunes from (LwF) names the parameter that
    holds it in ``transfer_source``; ``aerossl finetune SOURCE`` fills it with SOURCE.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[AlgorithmParams]] = AlgorithmParams
    tasks: ClassVar[tuple[str, ...]] = ("multiclass",)
    needs_images: ClassVar[bool] = False
    transfer_source: ClassVar[str | None] = None

    def __init__(
        self,
        model: nn.Module,
        params: AlgorithmParams,
        num_classes: int,
        *,
        num_images: int = 0,
        task: Task | None = None,
        meta_dim: int = 0,
        load_network: NetworkLoader | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.meta_dim = meta_dim
        self.p = params
        self.num_classes = num_classes
        self.num_images = num_images
        self._load_network = load_network
        self.task = task or get_task("multiclass")
        if self.task.name not in self.tasks:
            raise ConfigError(f"algorithm '{self.name}' does not support {self.task.name} "
                              f"labels (it supports: {', '.join(self.tasks)})")
        options = params.options(num_classes)
        self.mixer, self.aligner, self.entropy_min = (options.labeled_mix, options.align,
                                                      options.entropy)
        self._register_load_state_dict_pre_hook(_renamed_keys)

    def run_network(self, source: str, checkpoint: str, key: str
                    ) -> tuple[nn.Module, dict[str, Any]]:
        """A trained run's network (``key``: the parameter that named it, for errors)."""
        if self._load_network is None:
            raise ConfigError(f"algorithm.{key}: '{self.name}' loads a trained run, but it was "
                              "built without a network loader (pass load_network=)")
        return self._load_network(source, checkpoint)

    def weak_strong_logits(
        self, x: Tensor, u_weak: Tensor, u_strong: Tensor, joint: bool = False,
        contrast: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """Logits ``(logits_x, logits_weak, logits_strong)`` of the labelled, weak and strong
        views, for weak-to-strong methods.

        The weak view's logits carry no gradient: by default it runs without autograd and the
        labelled and strong views share one forward; ``joint`` runs all three in one forward
        (batch norm sees them together, as the reference code does). With ``contrast`` (more
        views trained in the same forward, e.g. CCSSL's second strong view) the network runs as
        ``forward_features`` then ``forward_head`` and the pooled features of the strong and
        ``contrast`` views are returned fourth.
        """
        n, w, m = len(x), len(u_weak), len(u_strong)
        if joint:
            views = [x, u_weak, u_strong]
            sizes = [n, w, m]
        else:
            with torch.no_grad():
                logits_weak = self.model(u_weak)
            views, sizes = [x, u_strong], [n, m]
        if contrast is None:
            logits = self.model(torch.cat(views)).split(sizes)
            features = None
        else:
            all_features = self.model.forward_features(torch.cat([*views, contrast]))
            logits = self.model.forward_head(all_features[: sum(sizes)]).split(sizes)
            features = all_features[sum(sizes) - m:]
        if joint:
            logits_x, logits_weak, logits_strong = logits
            logits_weak = logits_weak.detach()
        else:
            logits_x, logits_strong = logits
        if features is None:
            return logits_x, logits_weak, logits_strong
        return logits_x, logits_weak, logits_strong, features

    # ------------------------------------------------------------ options any method can use

    def mix_labeled(self, x: Tensor, y: Tensor, meta: Tensor | None = None) -> tuple[Tensor, ...]:
        """Labelled inputs and soft targets, through the ``labeled_mix`` component (MixUp or
        CutMix in training mode, else unchanged).

        Returns ``(x, targets)``: ``one_hot(y)`` (train with :func:`soft_cross_entropy`), or the
        multi-hot labels of a multi-label task. With per-image ``meta`` (B x D, e.g. encoded
        metadata) returns ``(x, targets, meta)``, the metadata mixed like the targets.
        """
        x, targets, meta = self.mixer(x, self.task.targets(y, self.num_classes), meta)
        return (x, targets) if meta is None else (x, targets, meta)

    def align(self, probs: Tensor) -> Tensor:
        """Unlabelled guesses through the distribution-alignment component (``dist_align``)."""
        return self.aligner(probs)

    def entropy_loss(self, logits: Tensor) -> Tensor:
        """The entropy-minimisation component's loss (``entropy_weight``; zero when off)."""
        return self.entropy_min(logits)

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        """The views a step needs; the default is one weak view of labelled images."""
        return ViewSpec(labeled={"weak": "weak"})

    @classmethod
    def default_pipelines(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Augment pipelines (name: spec) the method brings for a config whose ``augment``
        section lacks them, from the raw (unvalidated) algorithm section ``params``; none by
        default."""
        return {}

    @classmethod
    def pipelines(cls, params: AlgorithmParams) -> set[str]:
        """Names of the augmentation pipelines the config must declare."""
        return cls.views(params).pipelines()

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """Compute the loss of one step."""
        raise NotImplementedError

    def on_step_end(self, ctx: StepContext) -> None:
        """Hook after the optimiser step (e.g. to update a teacher)."""

    def prepare(self, data: RunData) -> None:
        """Hook called once when a new run starts, before its first step (e.g. to pseudo-label
        the unlabelled images with a teacher). Not called on resume: keep results in buffers."""

    def refresh_interval(self) -> int:
        """Steps between calls of :meth:`refresh` (0, the default: never)."""
        return 0

    def refresh(self, data: RunData) -> None:
        """Hook called before every ``refresh_interval()``-th step, step 0 included, with the
        run's data (e.g. to relabel the unlabelled pool with the current network). Results must
        be kept in buffers: a resumed run calls it again only at the next multiple."""

    def offline_pseudo_labels(self) -> tuple[Tensor, Tensor] | None:
        """Pseudo-labels ``(N,)`` and weights ``(N,)`` over the whole dataset, for a method that
        labels the unlabelled images once (Noisy Student); the engine scores them against the
        hidden labels as ``pseudo_label_acc``. None (the default) for the others."""
        return None

    def extra_metrics(self, network: nn.Module, data: RunData) -> dict[str, float]:
        """Extra test metrics of the evaluated ``network``, logged with each evaluation and
        written to summary.json (e.g. the linear-probe accuracy of a self-supervised encoder)."""
        return {}

    def eval_model(self) -> nn.Module:
        """The network that is evaluated, checkpointed as the result and exported."""
        return self.model

    @classmethod
    def kept_old_task(cls, params: AlgorithmParams, state: dict[str, Tensor]
                      ) -> tuple[str, str, dict[str, Tensor]] | None:
        """For a transfer method that keeps the old task's head beside the new one (LwF): the
        source run, its checkpoint and the kept head's weights, read from the run's saved
        algorithm ``state``. None (the default): the method keeps no old head."""
        return None


class LabeledMixParams(AlgorithmParams):
    """MixUp or CutMix on the labelled batch (for any method)."""

    labeled_mix: Literal["none", "mixup", "cutmix"] = Field(
        "none", description="mix the labelled batch: none, mixup or cutmix"
    )
    labeled_mix_alpha: float = Field(
        1.0, gt=0, description="Beta(alpha, alpha) of the labelled mixing coefficient"
    )

    def options(self, num_classes: int) -> Options:
        return replace(super().options(num_classes),
                       labeled_mix=LabeledMix(self.labeled_mix, self.labeled_mix_alpha))


class SSLParams(LabeledMixParams):
    """Options any semi-supervised method can switch on."""

    def options(self, num_classes: int) -> Options:
        align = (DistributionAlignment(num_classes, self.dist_align_momentum,
                                       self.dist_align_target)
                 if self.dist_align else NoAlignment())
        return replace(super().options(num_classes), align=align,
                       entropy=EntropyMinimisation(self.entropy_weight))

    entropy_weight: float = Field(
        0.0, ge=0, description="weight of entropy minimisation on unlabelled predictions"
    )
    dist_align: bool = Field(
        False, description="distribution alignment of unlabelled guesses (ReMixMatch)"
    )
    dist_align_momentum: float = Field(
        0.999, ge=0, lt=1, description="momentum of distribution alignment's running mean"
    )
    dist_align_target: Literal["uniform", "labeled"] = Field(
        "uniform", description="distribution alignment's target: uniform (ReMixMatch, "
        "SoftMatch) or the running mean of the labelled predictions (AdaMatch)"
    )


def rampup(step: float, length: float, shape: Literal["sigmoid", "linear"] = "sigmoid") -> float:
    """A weight that ramps up over ``length`` steps and is 1 from then on (and when
    ``length <= 0``), with ``t = step / length``: ``sigmoid`` is ``exp(-5 (1 - t)^2)`` (Laine &
    Aila 2017), ``linear`` is ``t`` (MixMatch)."""
    if length <= 0 or step >= length:
        return 1.0
    if shape == "linear":
        return step / length
    t = 1.0 - step / length
    return math.exp(-5.0 * t * t)


def sigmoid_rampup(step: int, length: int) -> float:
    """:func:`rampup` with the sigmoid shape."""
    return rampup(step, length, "sigmoid")


def _renamed_keys(state: dict, prefix: str, *args: object) -> None:
    """Checkpoints written before the options were components kept distribution alignment's
    running mean as ``da_model_mean``."""
    old = prefix + "da_model_mean"
    if old in state:
        state[prefix + "aligner.model_mean"] = state.pop(old)


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
        from aerossl.errors import suggest

        raise ConfigError(f"unknown algorithm '{name}'{suggest(name, algorithm_names())} "
                          f"(available: {', '.join(algorithm_names())})")
    return _REGISTRY[name]
