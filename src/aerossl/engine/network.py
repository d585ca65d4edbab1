"""The network a run trains: its data-dependent config (normalisation, absolute paths), the
pretrained or transferred weights, and what is frozen (and so computed once by the view bank)."""

from __future__ import annotations

import logging
from typing import Any

from aerossl.config import Config
from aerossl.data.dataset import recorded_root
from aerossl.data.metadata import resolve_metadata_file
from aerossl.engine.data import DataBundle, channel_stats
from aerossl.engine.transfer import freeze_backbone, freeze_units, load_init
from aerossl.errors import ConfigError
from aerossl.models.normalize import Normalized
from aerossl.models.pretrained import load_pretrained, pretrained_source
from aerossl.runs.loader import build_network

log = logging.getLogger("aerossl")


def resolve_data_config(cfg: Config, data: DataBundle) -> Config:
    """Fill in what the run folder must record: normalisation statistics of the training images
    (when not given) and the absolute dataset root (so the run works from any directory)."""
    resolved: dict[str, Any] = {}
    if cfg.data.mean is None and cfg.model.pretrained:  # the weights' own input normalisation
        source = pretrained_source(cfg.model.name, cfg.model.pretrained)
        resolved["mean"], resolved["std"] = [source.mean] * data.channels, [source.std] * \
            data.channels
    elif cfg.data.mean is None:
        resolved["mean"], resolved["std"] = channel_stats(data.images, data.split.unlabeled)
    resolved.update(recorded_root(cfg.data, data.source or data.dataset.root))  # its format's
    if cfg.data.metadata_file:  # absolute, so a resumed run finds it from anywhere
        resolved["metadata_file"] = str(resolve_metadata_file(data.dataset.root,
                                                              cfg.data.metadata_file))
    if cfg.data.gsd_m is None:  # the images' ground resolution, for maps (None: unknown)
        from aerossl.data.raster import measure_gsd

        gsd = measure_gsd([data.dataset.root / f for f in data.dataset.files])
        if gsd is not None:
            resolved["gsd_m"] = gsd
            log.info("data.gsd_m: %.4g m/px, from the images' CRS and transform", gsd)
    bands = data.bands
    if bands is not None and bands.band_min is not None and cfg.data.band_min is None:
        resolved["band_min"], resolved["band_max"] = list(bands.band_min), list(bands.band_max)
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=resolved)})


def setup_network(cfg: Config, data: DataBundle, needs_images: bool, algorithm: str,
                  resume: bool) -> tuple[Normalized, int]:
    """The run's network with its starting weights (``model.pretrained``, ``model.init``; on
    resume they come from the checkpoint) and frozen parts, and the first feature unit its
    training steps run: > 0 when the frozen units are computed once by the view bank (the
    network then takes the bank's feature maps, ``network.entry``)."""
    network = build_network(cfg, data.num_classes, data.channels)
    if cfg.model.pretrained and not resume:
        names = data.bands.selected_names if data.bands is not None else None
        load_pretrained(network.backbone, cfg.model.name, cfg.model.pretrained, names,
                        cfg.model.stem_init)
    if cfg.model.init and not resume:  # transfer learning
        load_init(network, cfg.model.init, data.classes)
    if cfg.model.freeze_backbone:
        log.info("model.freeze_backbone: %d tensors frozen", freeze_backbone(network))
        return network, 0
    if cfg.model.trainable_stages is None:
        return network, 0
    frozen = freeze_units(network, cfg.model.trainable_stages, cfg.model.name)
    if frozen and cfg.bank.use == "on" and needs_images:
        raise ConfigError(f"bank.use: on, but algorithm '{algorithm}' needs images in its "
                          "training step (a teacher on images, or a pixel-unit perturbation); "
                          "set bank.use: auto or off")
    if frozen and cfg.bank.use != "off" and not needs_images:
        network.entry = frozen
        return network, frozen
    if frozen and cfg.bank.use == "auto":
        log.info("view bank off: algorithm '%s' needs images in its steps; the frozen units "
                 "are recomputed at every step", algorithm)
    return network, 0
