"""Model registry, factory and the shared :class:`Classifier` contract.

Every registered model is a :class:`Classifier`: ``forward_features`` returns the pooled feature
vector ``(B, num_features)``, ``head`` is an ``nn.Linear`` on top of it, ``stem`` holds the first
convolution (``stem_conv``) so transfer learning can adapt the number of input channels.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from aerossl.errors import ConfigError, suggest
from aerossl.models.pool import global_avg_pool

__all__ = [
    "MODELS",
    "Classifier",
    "check_dropout",
    "check_momentum",
    "check_positive_int",
    "create_model",
    "model_names",
    "model_params",
    "register_model",
]

ModelFactory = Callable[..., "Classifier"]
_Fn = TypeVar("_Fn", bound=Callable[..., Any])

#: Registered model constructors by name (filled by :func:`register_model`).
MODELS: dict[str, ModelFactory] = {}

# Arguments every constructor takes and that ``create_model`` passes itself.
_RESERVED = ("num_classes", "in_channels")


def check_positive_int(model: str, name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise a ConfigError naming model and field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model {model!r}: {name} must be an integer >= 1, got {value!r}")
    return value


def check_dropout(model: str, value: object) -> float:
    """Return ``value`` as a float if it is a probability in [0, 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"model {model!r}: dropout must be a number in [0, 1), got {value!r}")
    return float(value)


def check_momentum(model: str, value: object) -> float:
    """Return ``value`` as a float if it is a BatchNorm momentum in (0, 1], else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"model {model!r}: bn_momentum must be a number in (0, 1], got {value!r}")
    return float(value)


def init_conv_bn(module: nn.Module, nonlinearity: str = "relu") -> None:
    """Kaiming-normal (fan_out) convolutions, batch norm with weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=nonlinearity)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Classifier(nn.Module):
    """Base class of all models: ``forward(x) == head(head_drop(forward_features(x)))``.

    Subclasses build ``self.stem`` (containing the first ``nn.Conv2d``) and their body, implement
    :meth:`forward_features`, then call :meth:`build_head`. ``head_drop`` is dropout on the
    feature vector (identity unless a model has head dropout; a no-op in eval mode).
    """

    num_features: int
    stem: nn.Module
    head: nn.Linear
    head_drop: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the globally pooled features ``(B, num_features)``."""
        return self.forward_from(x, 0)

    def feature_units(self) -> list[nn.Module]:
        """The feature path as consecutive modules, input first: ``forward_features(x)`` is
        ``pool(units[-1](...units[0](x)))``. Lets a run train only the last units and feed them
        precomputed outputs of the others (``model.trainable_stages``, the view bank)."""
        raise NotImplementedError(f"{type(self).__name__} does not list its feature units")

    def forward_from(self, h: torch.Tensor, start: int) -> torch.Tensor:
        """Pooled features from ``h``, the output of unit ``start - 1`` (the image when 0)."""
        for unit in self.feature_units()[start:]:
            h = unit(h)
        return global_avg_pool(h)

    def map_foreign_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the keys of a state dict in another library's layout (torchvision, timm,
        efficientnet_pytorch) to this model's; keys already in this layout are kept."""
        return state

    def forward_to(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """Output of unit ``stop - 1`` for images ``x`` (the input of unit ``stop``)."""
        for unit in self.feature_units()[:stop]:
            x = unit(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map features ``(B, num_features)`` to logits ``(B, num_classes)``."""
        return self.head(self.head_drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, num_classes)`` for images ``(B, in_channels, H, W)``."""
        return self.forward_head(self.forward_features(x))

    def build_head(self, num_features: int, num_classes: int, dropout: float = 0.0) -> None:
        """Create ``head_drop`` and ``head``; call once at the end of ``__init__``."""
        self.num_features = num_features
        self.head_drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(num_features, num_classes)
        self.init_head(self.head)

    def init_head(self, head: nn.Linear) -> None:
        """Initialise a new classifier layer (default: PyTorch's own nn.Linear init)."""

    def reset_head(self, num_classes: int) -> None:
        """Replace ``head`` by a freshly initialised ``nn.Linear(num_features, num_classes)``."""
        check_positive_int(type(self).__name__, "num_classes", num_classes)
        old = self.head.weight
        head = nn.Linear(self.num_features, num_classes, device=old.device, dtype=old.dtype)
        self.init_head(head)
        self.head = head

    @property
    def num_classes(self) -> int:
        """Number of outputs of the classifier head."""
        return self.head.out_features

    @property
    def stem_conv_name(self) -> str:
        """Dotted name (for ``get_submodule``/``set_submodule``) of the first convolution."""
        for name, module in self.stem.named_modules(prefix="stem"):
            if isinstance(module, nn.Conv2d):
                return name
        raise RuntimeError(f"{type(self).__name__}.stem contains no nn.Conv2d")

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The first ``nn.Conv2d`` of the network (inside ``stem``)."""
        conv = self.get_submodule(self.stem_conv_name)
        assert isinstance(conv, nn.Conv2d)
        return conv

    def set_stem_conv(self, conv: nn.Conv2d) -> None:
        """Replace the first convolution (e.g. one with another number of input channels)."""
        old = self.stem_conv
        if conv.out_channels != old.out_channels:
            raise ConfigError(
                f"new stem conv must have {old.out_channels} output channels, "
                f"got {conv.out_channels}"
            )
        self.set_submodule(self.stem_conv_name, conv)

    @property
    def in_channels(self) -> int:
        """Number of input image channels (read from the stem convolution)."""
        return self.stem_conv.in_channels


def register_model(name: str) -> Callable[[_Fn], _Fn]:
    """Decorator registering a model constructor (class or function) under ``name``.

    The constructor must accept ``num_classes`` and ``in_channels``; every other parameter must
    have a default and be passable by keyword (no ``*args``/``**kwargs``), so kwargs can be
    validated against the signature.
    """

    def decorator(fn: _Fn) -> _Fn:
        if name in MODELS:
            raise ConfigError(f"model {name!r} is already registered")
        params = inspect.signature(fn).parameters
        for reserved in _RESERVED:
            if reserved not in params:
                raise TypeError(f"model {name!r}: constructor lacks parameter {reserved!r}")
        for p in params.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise TypeError(f"model {name!r}: parameter {p.name!r} must be keyword-able")
            if p.name not in _RESERVED and p.default is p.empty:
                raise TypeError(f"model {name!r}: parameter {p.name!r} needs a default")
        MODELS[name] = fn
        return fn

    return decorator


def model_names() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(MODELS)


def _lookup(name: str) -> ModelFactory:
    if not isinstance(name, str) or name not in MODELS:
        hint = suggest(name, model_names()) if isinstance(name, str) else ""
        raise ConfigError(f"unknown model {name!r}{hint} (available: {', '.join(model_names())})")
    return MODELS[name]


def model_params(name: str) -> dict[str, Any]:
    """Keyword arguments model ``name`` accepts besides num_classes/in_channels, with defaults."""
    params = inspect.signature(_lookup(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _RESERVED}


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> Classifier:
    """Build registered model ``name`` (see :func:`model_names`) with its own ``kwargs``.

    Raises ConfigError for an unknown name, an unknown keyword argument or an invalid value.
    """
    factory = _lookup(name)
    valid = model_params(name)
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"model {name!r} has no parameter {key!r}{suggest(key, list(valid))} "
                f"(valid: {', '.join(valid) or 'none'})"
            )
    check_positive_int(name, "num_classes", num_classes)
    check_positive_int(name, "in_channels", in_channels)
    return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
