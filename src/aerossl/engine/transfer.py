"""Transfer learning: initialise a network from a weights file, freeze its backbone, start
its head from a linear probe (``model.head_init: probe``).

``model.init`` names a run folder (its ``checkpoints/last.pt``), an aerossl checkpoint file or
a plain PyTorch state dict of the same architecture (keys of the classifier, optionally
prefixed ``backbone.`` / ``module.`` / ``model.``, or nested under ``state_dict``/``model``).
Files are read with ``torch.load(weights_only=True)``: no code in them is ever run.

* A head of another number of classes (or of other class names) is replaced by a new one.
* A first convolution of another number of input channels is adapted: the mean over the
  source's input channels, repeated for each target channel and scaled by ``C_src / C_dst``
  (e.g. RGB to 13 bands: ``mean(RGB filters) * 3/13``), so a grey image gives the same response.
* The normalisation statistics (``mean``, ``std``) are always this run's own.
* Any other key whose shape differs is a :class:`CheckpointError` naming the file and keys;
  keys present on one side only are reported (and logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from aerossl.algorithms.base import RunData
from aerossl.engine.checkpoint import FORMAT_VERSION
from aerossl.errors import CheckpointError, ConfigError
from aerossl.models.normalize import Normalized
from aerossl.models.pretrained import adapt_in_channels
from aerossl.models.probe import fit_linear_head

log = logging.getLogger("aerossl")

_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")


@dataclass
class TransferReport:
    """What :func:`load_init` did, for the log and for tests."""

    source: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the network, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the network
    head_replaced: str = ""  # why the head was not loaded ('' when it was)
    adapted: list[str] = field(default_factory=list)  # human-readable adaptations

    def lines(self) -> list[str]:
        """The report, one line each."""
        out = [f"initialised {len(self.loaded)} tensors from {self.source}"]
        if self.head_replaced:
            out.append(f"new classifier head: {self.head_replaced}")
        out += self.adapted
        if self.missing:
            out.append(f"{len(self.missing)} keys not in the file (kept at random "
                       f"initialisation): {_short(self.missing)}")
        if self.unexpected:
            out.append(f"{len(self.unexpected)} keys of the file not used: "
                       f"{_short(self.unexpected)}")
        return out


def _short(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n})" if len(keys) > n else "")


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], list[str] | None, Path]:
    """The classifier weights in ``path`` (a run folder, checkpoint or state dict), the class
    names they were trained on (when recorded) and the file read."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path} (model.init takes a run folder, "
                              "a checkpoint or a PyTorch state dict file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises almost anything on a file that is not its own
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if "Weights only load failed" in str(e):
            first = "it holds pickled objects other than tensors (possibly code), refused"
        raise CheckpointError(f"{path} is not a weights file: {first}") from None
    classes = None
    if isinstance(obj, dict) and obj.get("format") == FORMAT_VERSION and "eval_model" in obj:
        classes = obj.get("classes")
        obj = obj["eval_model"]
    for key in ("state_dict", "model", "eval_model"):  # common wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise CheckpointError(f"{path} is not a state dict (a mapping of parameter names to "
                              "tensors) nor an aerossl checkpoint")
    return dict(obj), list(classes) if classes else None, path


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_init(
    network: Normalized, path: str | Path, classes: list[str] | None = None
) -> TransferReport:
    """Load the weights in ``path`` into ``network`` (in place), adapting head and first
    convolution as described in the module docstring; returns the report (also logged)."""
    state, source_classes, file = read_weights(path)
    backbone = network.backbone
    target = backbone.state_dict()
    stem_key = f"{backbone.stem_conv_name}.weight" if hasattr(backbone, "stem_conv_name") else ""
    report = TransferReport(file)
    incoming: dict[str, Tensor] = {}
    keys = [_strip(key) for key in state]  # this network's name for each key of the file
    mapper = getattr(backbone, "map_foreign_keys", None)
    if mapper is not None:  # another library's layout (torchvision, timm, efficientnet_pytorch)
        keys = list(mapper(dict(zip(keys, state.values(), strict=True))))  # order-preserving
        moved = [(old, new) for old, new in zip(state, keys, strict=True) if _strip(old) != new]
        if moved:
            report.adapted.append(f"{len(moved)} keys renamed from the file's layout (e.g. "
                                  f"{moved[0][0]} -> {moved[0][1]})")
    for key, k, value in zip(state, keys, state.values(), strict=True):
        if k in ("mean", "std"):
            continue  # normalisation is this run's own
        if k in target:
            incoming[k] = value
        else:
            report.unexpected.append(key)
    head_keys = [k for k in target if k.startswith("head.")]
    mismatched = []
    reason = ""
    if source_classes is not None and classes is not None and source_classes != classes:
        reason = f"classes differ ({len(source_classes)} in {file.name}, {len(classes)} here)"
    for k in head_keys:
        if k in incoming and incoming[k].shape != target[k].shape:
            reason = (f"{incoming[k].shape[0]} outputs in the file, "
                      f"{target[k].shape[0]} classes here")
    if reason:
        report.head_replaced = reason
        for k in head_keys:
            incoming.pop(k, None)
    for k, value in list(incoming.items()):
        want = target[k].shape
        if value.shape == want:
            continue
        if (k == stem_key and value.ndim == 4 and value.shape[0] == want[0]
                and value.shape[2:] == want[2:]):
            incoming[k] = adapt_in_channels(value.float(), want[1]).to(target[k].dtype)
            report.adapted.append(
                f"first convolution {k} adapted from {value.shape[1]} to {want[1]} input "
                f"channels: mean of the {value.shape[1]} channel filters repeated {want[1]} "
                f"times, scaled by {value.shape[1]}/{want[1]}")
            continue
        mismatched.append(f"{k} {tuple(value.shape)} in the file vs {tuple(want)} here")
    if mismatched:
        raise CheckpointError(f"{file} does not fit this network ({type(backbone).__name__}); "
                              f"shapes differ for {len(mismatched)} keys: {_short(mismatched, 5)}")
    if not incoming:
        raise CheckpointError(f"{file} has no key of this network ({type(backbone).__name__}); "
                              f"its keys: {_short(list(state), 6)}")
    report.missing = [k for k in target if k not in incoming and not
                      (report.head_replaced and k in head_keys)]
    report.loaded = sorted(incoming)
    backbone.load_state_dict(incoming, strict=False)
    for line in report.lines():
        log.info("model.init: %s", line)
    return report


def freeze_backbone(network: Normalized) -> int:
    """Make every parameter but the head's non-trainable; returns how many tensors were frozen.

    Call :func:`frozen_norms_eval` after each ``train()`` so the frozen batch-norm layers keep
    their running statistics (a true linear probe on fixed features)."""
    head = {id(p) for p in network.head.parameters()}
    frozen = 0
    for p in network.parameters():
        if id(p) not in head:
            p.requires_grad_(False)
            frozen += 1
    return frozen


def freeze_units(network: Normalized, trainable: int, model: str) -> int:
    """Freeze all but the last ``trainable`` feature units (the head always trains); returns
    how many units are frozen (the first unit a training step must run)."""
    units = network.backbone.feature_units()
    if trainable > len(units):
        raise ConfigError(f"model.trainable_stages: {trainable}, but model {model!r} has "
                          f"{len(units)} feature units (stem, stages, ...); use at most "
                          f"{len(units)}, or null to train everything")
    frozen = len(units) - trainable
    for unit in units[:frozen]:
        for p in unit.parameters():
            p.requires_grad_(False)
    if frozen:
        log.info("model.trainable_stages: the first %d of %d feature units of %s are frozen",
                 frozen, len(units), model)
    return frozen


def norms_eval(module: nn.Module) -> None:
    """Put every batch-norm layer into eval mode (``model.bn: frozen``): running statistics
    are used and kept; the affine parameters still train."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            m.eval()


def frozen_norms_eval(module: nn.Module) -> None:
    """Put normalisation layers whose parameters are all frozen into eval mode."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def backbone_parameter_ids(network: nn.Module) -> set[int]:
    """Ids of the network's parameters outside its classifier head (for ``backbone_lr_scale``)."""
    head = {id(p) for p in network.head.parameters()} if hasattr(network, "head") else set()
    return {id(p) for p in network.parameters() if id(p) not in head}



def probe_head(network: Normalized, data: RunData, num_classes: int, l2: float) -> float:
    """``model.head_init: probe``: replace the head's weights by a logistic regression fitted on
    the network's pooled features of the labelled images (eval mode; see
    :mod:`aerossl.models.probe`). Only the labelled images' visible labels are read. Returns the
    probe's accuracy on those images."""
    labeled = np.asarray(data.labeled)
    if len(labeled) == 0:
        raise ConfigError("model.head_init: probe needs labelled images; this run has none")
    features = data.features(network, labeled)  # in eval mode
    labels = data.labels.cpu()[torch.as_tensor(labeled)]
    fitted = fit_linear_head(features, labels, num_classes, l2)
    head = network.head
    with torch.no_grad():
        head.weight.copy_(fitted.weight.to(head.weight))
        head.bias.copy_(fitted.bias.to(head.bias))
        return float((fitted(features.double().cpu()).argmax(1) == labels).double().mean())
