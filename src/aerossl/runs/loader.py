"""A trained run, loaded for inference: its config, its network and the device to run it on.

Prediction, export, evaluation and distillation (a teacher is a trained run) load runs from
here, without the training engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from aerossl.config import Config, read_yaml
from aerossl.data.dataset import task_of
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.errors import CheckpointError, ConfigError
from aerossl.models import create_model
from aerossl.models.normalize import Normalized
from aerossl.models.tta import with_tta
from aerossl.validate import config_from_dict

CHECKPOINTS = ("last", "best")  # the checkpoints a run folder keeps for inference


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"train.device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: CUDA requested but not available")
    return device


def build_network(cfg: Config, num_classes: int, channels: int) -> Normalized:
    """The configured classifier behind per-channel normalisation."""
    assert cfg.data.mean is not None and cfg.data.std is not None
    backbone = create_model(cfg.model.name, num_classes, channels, **cfg.model_params())
    return Normalized(backbone, cfg.data.mean, cfg.data.std)


def load_run_config(run_dir: Path) -> Config:
    """The resolved config a run folder was started with."""
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    return config_from_dict(read_yaml(path), str(path))


def load_source_network(
    source: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_run_network` of a run named as a config names a teacher or an original
    network: a run folder (with ``checkpoint``), or its ``checkpoints/last.pt``/``best.pt``."""
    path = Path(source).expanduser()
    if path.suffix == ".pt" and path.parent.name == "checkpoints":  # RUN/checkpoints/best.pt
        path, checkpoint = path.parent.parent, path.stem
    return load_run_network(path, checkpoint, device)


def load_run_network(
    run_dir: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu",
    tta: str = "none",
) -> tuple[nn.Module, dict[str, Any]]:
    """A run's evaluated network (eval mode, on ``device``) and what describes it: classes,
    image size, channels, step, model name and normalisation. ``tta`` (``flips`` or
    ``dihedral``) wraps it in :class:`aerossl.models.tta.TestTimeAugment`."""
    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"unknown checkpoint {checkpoint!r}: use 'last' or 'best'")
    cfg = load_run_config(run_dir)
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    state = load_checkpoint(path, device)
    classes = state.get("classes")
    if not classes:
        raise CheckpointError(f"{path} does not record the run's classes")
    if cfg.data.mean is None:
        raise CheckpointError(f"{run_dir / 'config.yaml'} has no data.mean; the run never started")
    channels = len(cfg.data.mean)
    network = build_network(cfg, len(classes), channels)
    try:
        network.load_state_dict(state["eval_model"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path} does not match the network of {run_dir / 'config.yaml'}: "
                              f"{str(e).splitlines()[0][:200]}") from None
    network.to(device).eval()
    network = with_tta(network, tta)
    info = {"classes": list(classes), "image_size": int(cfg.data.image_size),
            "channels": channels, "step": int(state.get("step", -1)),
            "model": cfg.model.name, "mean": list(cfg.data.mean), "std": list(cfg.data.std),
            "task": task_of(cfg.data), "bands": cfg.data.bands,
            "band_min": cfg.data.band_min, "band_max": cfg.data.band_max,
            "scaling": cfg.data.scaling, "gsd_m": cfg.data.gsd_m, "tta": tta}
    return network, info
