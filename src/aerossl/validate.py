"""A config checked against what is registered: the schema of :mod:`aerossl.config`, then the
choices it names (model and its keys, algorithm and its parameters, augment ops, data layout,
pretrained weights) and the rules that span sections.

This is the one module that sees both the schema and the registries; everything that loads a
config for a run goes through :func:`config_from_dict` or :func:`load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aerossl.algorithms import algorithm_names, get_algorithm
from aerossl.augment import build_pipeline
from aerossl.config import Config, parse_config, raw_config
from aerossl.data.dataset import resolve_image_size, task_of
from aerossl.data.formats import check_layout
from aerossl.errors import ConfigError, DataError, suggest
from aerossl.models import model_params
from aerossl.models.pretrained import pretrained_source


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a raw dict into a :class:`~aerossl.config.Config`; errors name the source and
    the key. ``data.image_size: auto`` is resolved here, from the data (see
    :func:`~aerossl.data.dataset.resolve_image_size`), so a run folder records the size used."""
    cfg = parse_config(raw, source)
    if cfg.data.image_size == "auto":
        try:
            cfg.data.image_size = resolve_image_size(cfg.data)
        except DataError as e:
            raise ConfigError(f"{source}: data.image_size: auto: {e}") from None
    check_choices(cfg, source)
    return cfg


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    **sections: Any,
) -> Config:
    """Load a YAML config (or defaults), apply dotted overrides and keyword sections, validate.

    >>> cfg = load_config("configs/demo_fixmatch.yaml", ["train.steps=500"])
    """
    return config_from_dict(*raw_config(path, overrides, **sections))


def check_choices(cfg: Config, source: str) -> None:
    """Validate the model and algorithm sections against the chosen implementations."""
    try:
        check_layout(cfg.data.layout)
    except ConfigError as e:
        raise ConfigError(f"{source}: data.layout: {e}") from None
    try:
        params = model_params(cfg.model.name)
    except ConfigError as e:
        raise ConfigError(f"{source}: model.name: {e}") from None
    for key in cfg.model_params():
        if key not in params:
            hint = suggest(key, list(params))
            raise ConfigError(f"{source}: unknown key 'model.{key}' for model "
                              f"'{cfg.model.name}'{hint} (valid: {', '.join(params)})")
    try:
        algo = get_algorithm(cfg.algorithm.name)
    except ConfigError as e:
        raise ConfigError(f"{source}: algorithm.name: {e}") from None
    try:
        algo.Params(**cfg.algorithm_params())
    except ValidationError as e:
        fields = list(algo.Params.model_fields)
        msgs = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                msgs.append(f"{source}: unknown key 'algorithm.{key}' for algorithm "
                            f"'{cfg.algorithm.name}'{suggest(key, fields)}")
            else:
                msgs.append(f"{source}: algorithm.{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("\n".join(msgs)) from None
    task = task_of(cfg.data)
    if task not in algo.tasks:
        fits = [n for n in algorithm_names() if task in get_algorithm(n).tasks]
        raise ConfigError(f"{source}: algorithm '{cfg.algorithm.name}' does not support "
                          f"{task} data (data.task / data.root); use one of: {', '.join(fits)}")
    for name, spec in cfg.augment.items():
        try:
            build_pipeline(spec)
        except ConfigError as e:
            raise ConfigError(f"{source}: augment.{name}: {e}") from None
    needed = set(algo.pipelines(algo.Params(**cfg.algorithm_params())))
    missing = needed - set(cfg.augment)
    if missing:
        raise ConfigError(f"{source}: algorithm '{cfg.algorithm.name}' needs augment pipelines "
                          f"{sorted(missing)}; declare them under 'augment'")
    if cfg.model.pretrained is not None:
        try:
            pretrained_source(cfg.model.name, cfg.model.pretrained).path()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    if cfg.model.freeze_backbone and cfg.model.trainable_stages is not None:
        raise ConfigError(f"{source}: model.freeze_backbone and model.trainable_stages both "
                          "choose what trains; freeze_backbone is trainable_stages: 0")
    if (cfg.data.mean is None) != (cfg.data.std is None):
        raise ConfigError(f"{source}: data.mean and data.std must be given together")
    if (cfg.data.band_min is None) != (cfg.data.band_max is None):
        raise ConfigError(f"{source}: data.band_min and data.band_max must be given together")
    lo, hi = cfg.data.scale_percentiles
    if not 0 <= lo < hi <= 100:
        raise ConfigError(f"{source}: data.scale_percentiles must satisfy 0 <= low < high <= 100 "
                          f"(got {[lo, hi]})")
    if cfg.data.train_pool_file and cfg.data.labeled_names_file:
        raise ConfigError(f"{source}: give data.labeled_names_file (exactly the labelled images) "
                          "or data.train_pool_file (a pool to draw data.labels_per_class "
                          "from), not both")
    if cfg.data.train_pool_file and task == "multilabel":
        raise ConfigError(f"{source}: data.train_pool_file applies to single-label data; for "
                          "multi-label data use data.labeled_names_file")
    if cfg.data.metadata == "csv" and not cfg.data.metadata_file:
        raise ConfigError(f"{source}: data.metadata=csv needs data.metadata_file "
                          "(a CSV with the header path,lat,lon,date)")
