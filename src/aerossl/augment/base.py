"""Augmentation interface, registry, ``Compose`` and ``build_pipeline``.

Randomness is explicit (kornia style): ``sample(batch_size, generator)`` draws every random
parameter of a batch on the CPU from the given CPU generator, ``apply(x, params)`` is
deterministic, and ``op(x, generator)`` is ``op.apply(x, op.sample(len(x), generator))``. So a
run is reproducible from the generator state alone, identical on CPU and GPU, and the drawn
parameters can be inspected.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from aerossl.augment.functional import move
from aerossl.errors import ConfigError, suggest

Params = dict[str, Tensor]

AUGMENTATIONS: dict[str, type[Augmentation]] = {}
"""Registry of augmentation classes by their config name (filled by ``register_augmentation``)."""

_A = TypeVar("_A", bound="type[Augmentation]")


def check_batch(x: Tensor) -> tuple[int, int, int, int]:
    """Validate that ``x`` is a floating B×C×H×W batch and return its shape."""
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        what = f"{x.dim()}-d {x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"augmentations take a floating B×C×H×W batch, got a {what}")
    b, c, h, w = x.shape
    return b, c, h, w


def check_generator(generator: torch.Generator | None) -> None:
    """Parameters are drawn on the CPU, so the generator (if any) must be a CPU generator."""
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"augmentation parameters are drawn on the CPU; pass a CPU "
                         f"torch.Generator, not one on {generator.device}")


def to_device(params: Params, device: torch.device) -> Params:
    """``params`` moved to ``device`` (no copy when already there)."""
    return {k: move(v, device) for k, v in params.items()}


def check_number(op: str, param: str, value: Any, lo: float | None = None,
                 hi: float | None = None) -> float:
    """``value`` as a float, or ConfigError naming ``op`` and ``param`` if not a number in range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
        return float(value)
    rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else (
        f" >= {lo}" if lo is not None else (f" <= {hi}" if hi is not None else ""))
    raise ConfigError(f"augmentation '{op}': parameter '{param}' must be a number{rng}, "
                      f"got {value!r}")


def check_int(op: str, param: str, value: Any, lo: int | None = None,
              hi: int | None = None) -> int:
    """``value`` as an int, or ConfigError naming ``op`` and ``param`` if not an int in range."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
        return int(value)
    rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else (
        f" >= {lo}" if lo is not None else "")
    raise ConfigError(f"augmentation '{op}': parameter '{param}' must be an integer{rng}, "
                      f"got {value!r}")


def check_bool(op: str, param: str, value: Any) -> bool:
    """``value`` if it is a bool, else ConfigError naming ``op`` and ``param``."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"augmentation '{op}': parameter '{param}' must be true or false, "
                      f"got {value!r}")


class Augmentation:
    """A batched random image transform on float B×C×H×W tensors with values in [0, 1].

    Subclasses implement ``sample`` (CPU parameters from a CPU generator) and ``apply``
    (deterministic; works for any channel count C >= 1 and any device; the output has the
    input's shape, dtype and device and values in [0, 1]; the input is never modified).
    """

    name: str = ""

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Draw the random parameters of ``batch_size`` images (CPU tensors, leading dim B)."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Transform the batch ``x`` with the given parameters (moved to ``x.device``)."""
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``apply(x, sample(len(x), generator))``; ``generator=None`` uses torch's default."""
        b, *_ = check_batch(x)
        check_generator(generator)
        return self.apply(x, self.sample(b, generator))

    def __repr__(self) -> str:
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in names if hasattr(self, n))
        return f"{type(self).__name__}({args})"


class Compose(Augmentation):
    """Apply augmentations in order; its params are the list of the ops' params."""

    name = "compose"

    def __init__(self, ops: Sequence[Augmentation]) -> None:
        for op in ops:
            if not isinstance(op, Augmentation):
                raise ConfigError(f"Compose takes augmentations, got {type(op).__name__}")
        self.ops = list(ops)

    def sample(self, batch_size: int,  # type: ignore[override]
               generator: torch.Generator | None = None) -> list[Params]:
        """One params dict per op, drawn in order from ``generator``."""
        check_generator(generator)
        return [op.sample(batch_size, generator) for op in self.ops]

    def apply(self, x: Tensor, params: list[Params]) -> Tensor:  # type: ignore[override]
        """Apply each op with its params in turn."""
        check_batch(x)
        if len(params) != len(self.ops):
            raise ValueError(f"Compose of {len(self.ops)} ops got {len(params)} params dicts")
        for op, p in zip(self.ops, params, strict=True):
            x = op.apply(x, p)
        return x

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"Compose([{', '.join(repr(op) for op in self.ops)}])"


def register_augmentation(name: str) -> Callable[[_A], _A]:
    """Class decorator adding an ``Augmentation`` subclass to ``AUGMENTATIONS`` under ``name``."""

    def decorate(cls: _A) -> _A:
        if not (isinstance(cls, type) and issubclass(cls, Augmentation)):
            raise TypeError(f"register_augmentation('{name}') needs an Augmentation subclass")
        if name in AUGMENTATIONS and AUGMENTATIONS[name] is not cls:
            raise ValueError(f"augmentation '{name}' is already registered "
                             f"({AUGMENTATIONS[name].__qualname__})")
        cls.name = name
        AUGMENTATIONS[name] = cls
        return cls

    return decorate


def create_augmentation(name: str, params: Mapping[str, Any] | None = None) -> Augmentation:
    """Instantiate the registered augmentation ``name`` with ``params`` (checked by name)."""
    if not isinstance(name, str) or name not in AUGMENTATIONS:
        hint = suggest(name, list(AUGMENTATIONS)) if isinstance(name, str) else ""
        raise ConfigError(f"unknown augmentation {name!r}{hint} "
                          f"(available: {', '.join(sorted(AUGMENTATIONS))})")
    cls = AUGMENTATIONS[name]
    accepted = [p for p in list(inspect.signature(cls.__init__).parameters)[1:]
                if p not in ("args", "kwargs")]
    params = dict(params or {})
    for key in params:
        if key not in accepted:
            valid = ", ".join(accepted) if accepted else "none"
            raise ConfigError(f"augmentation '{name}' has no parameter {key!r}"
                              f"{suggest(str(key), accepted)} (valid: {valid})")
    return cls(**params)


def build_pipeline(spec: Sequence[str | Mapping[str, Any]] | None) -> Compose:
    """Build a ``Compose`` from a config list of op names or ``{"name": ..., **params}`` dicts.

    Example: ``build_pipeline(["flip", "rot90", {"name": "crop", "pad": 0.125}])``. Raises
    ``ConfigError`` for an unknown op (with a close-match suggestion) or an unknown or invalid
    parameter (naming the op and the parameter). ``None`` or ``[]`` is the identity.
    """
    if spec is None:
        return Compose([])
    if isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence):
        raise ConfigError(f"an augmentation pipeline is a list of op names or "
                          f"{{name: ..., param: ...}} entries, got {spec!r}")
    ops: list[Augmentation] = []
    for i, entry in enumerate(spec):
        if isinstance(entry, str):
            ops.append(create_augmentation(entry))
        elif isinstance(entry, Mapping):
            params = dict(entry)
            name = params.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(f"augmentation entry {i} ({dict(entry)!r}) needs a string "
                                  f"'name'")
            ops.append(create_augmentation(name, params))
        else:
            raise ConfigError(f"augmentation entry {i} must be an op name or a mapping with "
                              f"'name', got {entry!r}")
    return Compose(ops)
