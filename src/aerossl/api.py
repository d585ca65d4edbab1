"""The Python API: the same operations as the command line.

>>> import aerossl
>>> result = aerossl.train("demo_fixmatch", ["train.steps=300"])
>>> result.final_acc, result.report
>>> aerossl.evaluate(result.run_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aerossl.algorithms import algorithm_names, get_algorithm
from aerossl.config import (
    Config,
    apply_overrides,
    find_config,
    raw_config_of,
    read_yaml,
    shipped_configs,
    with_algorithm,
)
from aerossl.engine.data import load_data
from aerossl.engine.evaluate import evaluate_model
from aerossl.engine.run_folder import RunResult
from aerossl.engine.trainer import Trainer
from aerossl.errors import CheckpointError, ConfigError
from aerossl.runs.loader import load_run_config, load_run_network, resolve_device
from aerossl.validate import config_from_dict, load_config

#: Keys that may change when a run is resumed; others would break exact resume.
RESUME_OVERRIDABLE = {
    "train.steps", "train.device", "train.num_threads", "train.progress", "train.tensorboard",
    "train.eval_batch_size", "train.on_nonfinite", "data.cache_dir", "data.root",
}


def train(
    config: Config | str | Path | dict[str, Any],
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
) -> RunResult:
    """Train a run from a Config, a YAML path, a shipped config name or a dict."""
    if isinstance(config, Config):
        cfg = config_from_dict(apply_overrides(config.to_dict(), overrides))
    elif isinstance(config, dict):
        cfg = config_from_dict(apply_overrides(config, overrides))
    else:
        cfg = load_config(find_config(config), overrides)
    return Trainer(cfg, Path(run_dir) if run_dir else None).fit()


def resume(run_dir: str | Path, overrides: list[str] | None = None) -> RunResult:
    """Continue a stopped run from its last checkpoint, exactly where it was."""
    bad = [o for o in overrides or [] if o.split("=", 1)[0] not in RESUME_OVERRIDABLE]
    if bad:
        raise ConfigError(f"cannot change {bad} when resuming (allowed: "
                          f"{', '.join(sorted(RESUME_OVERRIDABLE))})")
    cfg = load_run_config(Path(run_dir))
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if not last.is_file():
        raise CheckpointError(f"checkpoint not found: {last}; the run stopped before its first "
                              "checkpoint, so start it anew")
    cfg = config_from_dict(apply_overrides(cfg.to_dict(), overrides), str(run_dir))
    return Trainer(cfg, Path(run_dir), resume=True).fit()


def evaluate(run_dir: str | Path, checkpoint: str = "last", device: str = "auto",
             tta: str = "none") -> dict:
    """Re-evaluate a run's saved weights (``last`` or ``best``) on its test split; ``tta``:
    ``flips`` or ``dihedral`` averages over flipped or turned copies of each test image
    (:mod:`aerossl.models.tta`)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    dev = resolve_device(device)
    network, info = load_run_network(run_dir, checkpoint, dev, tta)
    data = load_data(cfg.data, cfg.seed, split_dir=run_dir / "split")
    result = evaluate_model(network, data.images, data.labels, data.split.test,
                            cfg.train.eval_batch_size, dev, data.num_classes, task=data.task)
    return {"run_dir": str(run_dir), "checkpoint": checkpoint, "step": info["step"], "tta": tta,
            "num_test": len(data.split.test), **result.to_dict(), "classes": data.classes}


#: The runs of ``aerossl demo``, in order.
DEMO_CONFIGS = ("demo_supervised", "demo_pretrained_supervised", "demo_pretrained_fixmatch")


def demo(steps_scale: float = 1.0, output_dir: str = "runs", device: str = "auto"
         ) -> dict[str, RunResult]:
    """On the embedded demo dataset, same labels: supervised from scratch, supervised on the
    ImageNet-pretrained EfficientNet-Lite0, and FixMatch on it."""
    results = {}
    for name in DEMO_CONFIGS:
        cfg = load_config(find_config(name), [f"output_dir={output_dir}",
                                              f"train.device={device}"])
        steps = max(1, int(cfg.train.steps * steps_scale))
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), [
            f"train.steps={steps}", f"train.eval_every={min(cfg.train.eval_every, steps)}"]))
        results[name] = Trainer(cfg).fit()
    return results


# ------------------------------------------------------------------------------------------
# Pre-training, transfer, distillation and Noisy Student: each stage is an ordinary run.


def _train_raw(raw: dict[str, Any], overrides: list[str] | None,
               run_dir: str | Path | None) -> RunResult:
    from aerossl.pipelines.stages import with_default_pipelines

    cfg = config_from_dict(with_default_pipelines(apply_overrides(raw, overrides)))
    return Trainer(cfg, Path(run_dir) if run_dir else None).fit()


def pretrain(config: Config | str | Path | dict[str, Any], overrides: list[str] | None = None,
             run_dir: str | Path | None = None) -> RunResult:
    """SimCLR pre-training on the unlabelled images (``algorithm.name=simclr``; the config's
    ``contrastive`` augment pipeline, or the default one). Logs ``linear_probe_acc``."""
    return _train_raw(with_algorithm(raw_config_of(config), "simclr"), overrides, run_dir)


def finetune(init: str | Path, config: Config | str | Path | dict[str, Any],
             overrides: list[str] | None = None, run_dir: str | Path | None = None,
             algorithm: str | None = "supervised", linear_probe: bool = False,
             backbone_lr_scale: float | None = None) -> RunResult:
    """Train from the weights of ``init`` (run folder, checkpoint or state dict): full
    fine-tuning, or a linear probe (frozen backbone); ``algorithm=None`` keeps the config's."""
    raw = raw_config_of(config)
    if algorithm is not None:
        raw = with_algorithm(raw, algorithm)
    raw["model"] = {**(raw.get("model") or {}), "init": str(init)}
    name = (raw.get("algorithm") or {}).get("name")
    field = get_algorithm(name).transfer_source if name in algorithm_names() else None
    if field:  # the method's original network (LwF) is the one it starts from
        raw["algorithm"] = {field: str(init), **raw["algorithm"]}
    if linear_probe:
        raw["model"]["freeze_backbone"] = True
    if backbone_lr_scale is not None:
        raw["train"] = {**(raw.get("train") or {}), "backbone_lr_scale": backbone_lr_scale}
    return _train_raw(raw, overrides, run_dir)


def distill(teacher: str | Path, config: Config | str | Path | dict[str, Any],
            overrides: list[str] | None = None, run_dir: str | Path | None = None,
            mode: str | None = None) -> RunResult:
    """Distil the run ``teacher`` into the config's model (``algorithm.name=distill``)."""
    raw = with_algorithm(raw_config_of(config), "distill", teacher=str(teacher), mode=mode)
    return _train_raw(raw, overrides, run_dir)


def noisy_student(config: Config | str | Path | dict[str, Any], rounds: int = 2,
                  name: str = "noisy_student", output_dir: str | None = None,
                  student: dict[str, Any] | None = None,
                  overrides: list[str] | None = None) -> dict[str, Any]:
    """A supervised teacher, then ``rounds`` Noisy Student rounds (student sections default to
    ``model.dropout=0.3``); returns the pipeline summary (per round teacher and student)."""
    from aerossl.pipelines.stages import NoisyStudentPlan, run_pipeline

    base = apply_overrides(raw_config_of(config), overrides)
    base.pop("algorithm", None)
    plan = NoisyStudentPlan(rounds=rounds, **({"student": student} if student else {}))
    spec = {"name": name, "output_dir": output_dir or base.get("output_dir", "runs"),
            "base": base, "noisy_student": plan.model_dump()}
    return run_pipeline(spec)


def run_pipeline(spec: str | Path | dict[str, Any], overrides: list[str] | None = None
                 ) -> dict[str, Any]:
    """Run (or continue: finished stages are skipped, a stopped one resumed) a pipeline file;
    ``overrides`` (``dotted.key=value``) apply to its ``base`` config."""
    from aerossl.pipelines import stages as pipeline

    raw = dict(spec) if isinstance(spec, dict) else read_yaml(find_config(spec))
    if overrides:
        raw["base"] = apply_overrides(raw.get("base") or {}, overrides)
    return pipeline.run_pipeline(raw)


def evaluate_old_task(run_dir: str | Path, source_run: str | Path, checkpoint: str = "last",
                      device: str = "cpu") -> float:
    """Old-task accuracy of a transfer run (LwF: its kept old head; fine-tuning or a frozen
    backbone: the source's head on the run's backbone) on the test split of ``source_run``."""
    from aerossl.pipelines.old_task import old_task_accuracy

    return old_task_accuracy(run_dir, source_run, checkpoint, device)


def sweep(config: Config | str | Path | dict[str, Any],
          labels: list[str | int] | tuple[str | int, ...] = ("1", "2", "4", "10", "1%", "10%",
                                                            "all"),
          methods: list[str] | tuple[str, ...] = ("supervised", "fixmatch"),
          seeds: list[int] | tuple[int, ...] = (0, 1), overrides: list[str] | None = None,
          name: str = "sweep", output_dir: str | Path | None = None, plots: bool = True,
          train: bool = True) -> Any:
    """The label-budget sweep (:mod:`aerossl.pipelines.sweep`): every method x label budget x
    seed as a run under ``output_dir/name``, resumable; writes sweep.md/.csv/.json, sweep.png and
    the compare view, and returns a :class:`aerossl.pipelines.sweep.SweepResult`.
    ``train=False`` only reports the grid's finished cells."""
    from aerossl.pipelines import sweep as label_sweep

    if not isinstance(config, Config | dict):
        config = find_config(config)
    return label_sweep.sweep(config, labels, methods, seeds, overrides, name, output_dir, plots,
                             train)


def pseudo_label(run_dir: str | Path, data_dir: str | Path, out: str | Path = "pseudo_labels.csv",
                 checkpoint: str = "last", device: str = "auto", progress: bool = True,
                 tta: str = "none") -> Path:
    """Write predicted class, confidence and every class probability of each image under
    ``data_dir`` to the CSV ``out`` (columns ``path, predicted_class, confidence, ...,
    prob_<class>``)."""
    from aerossl.runs.predict import predict_paths

    res = predict_paths(run_dir, [data_dir], out, top_k=1, checkpoint=checkpoint,
                        device=device, progress=progress, all_probs=True, tta=tta)
    return res.output_csv


def map_scene(run_dir: str | Path, scene: str | Path, out_dir: str | Path | None = None,
              **options: Any) -> Any:
    """Classify the tiles of a large GeoTIFF/JPEG/PNG into a map (class and confidence
    GeoTIFFs, GeoJSON, preview PNG, tile CSV); options: see :func:`aerossl.runs.mapping.map_scene`.
    Returns a :class:`aerossl.runs.mapping.MapResult`."""
    from aerossl.runs.mapping import map_scene as _map_scene

    return _map_scene(run_dir, scene, out_dir, **options)


def suggest_labels(run_dir: str | Path, budget: int, out_dir: str | Path | None = None,
                   **options: Any) -> Any:
    """Rank a run's unlabelled images (uncertainty under weak views, balanced over predicted
    classes, diverse) and write the ``budget`` best as CSV, HTML grid and a ``labeled.txt``
    split file; options: see :func:`aerossl.runs.suggest.suggest_labels`. Returns a
    :class:`aerossl.runs.suggest.SuggestResult`."""
    from aerossl.runs.suggest import suggest_labels as _suggest

    return _suggest(run_dir, budget, out_dir, **options)


def accept_labels(run_dir: str | Path, suggestions_csv: str | Path,
                  out: str | Path | None = None) -> Path:
    """The split file of the suggested images whose ``label`` column a user filled in (see
    :func:`aerossl.runs.suggest.accept_labels`)."""
    from aerossl.runs.suggest import accept_labels as _accept

    return _accept(run_dir, suggestions_csv, out)


def predict(run_dir: str | Path, paths: list[str] | list[Path], output: str | Path,
            **options: Any) -> Any:
    """Classify image files or folders with a trained run into a CSV (and GeoJSON); options:
    see :func:`aerossl.runs.predict.predict_paths`. Returns its
    :class:`~aerossl.runs.predict.PredictResult`."""
    from aerossl.runs.predict import predict_paths

    return predict_paths(run_dir, paths, output, **options)


def export(run_dir: str | Path, format: str, output: str | Path | None = None,
           checkpoint: str = "last", input_dtype: str = "uint8") -> Path:
    """Export a run's network to ONNX or TorchScript (raw images in, probabilities out); see
    :func:`aerossl.runs.export.export_run`."""
    from aerossl.runs.export import export_run

    return export_run(run_dir, format, output, checkpoint, input_dtype)


def compare(run_dirs: list[str] | list[Path], plot: str | Path | None = None
            ) -> tuple[str, Path | None]:
    """The comparison table of runs (Markdown) and, with ``plot``, their accuracy curves."""
    from aerossl.runs.compare import write_comparison

    return write_comparison(run_dirs, plot)


def report(run_dir: str | Path) -> Path:
    """(Re)write a run's HTML and Markdown report; returns the HTML file."""
    from aerossl.engine.report import write_report

    return write_report(Path(run_dir))


def validate(config: str | Path, overrides: list[str] | None = None) -> Config:
    """A config file or shipped config name, with overrides, validated and resolved."""
    return load_config(find_config(config), overrides)


def inventory() -> dict[str, list[str]]:
    """What is registered: algorithms, models (with their feature units and pretrained weights),
    augmentations, data formats and shipped configs."""
    from aerossl.augment import AUGMENTATIONS
    from aerossl.data.formats import format_names
    from aerossl.models import create_model, model_names
    from aerossl.models.pretrained import PRETRAINED

    models = []
    for name in model_names():  # feature units: the most model.trainable_stages can be
        units = len(create_model(name, 2).feature_units())
        weights = ", ".join(w for m, w in PRETRAINED if m == name)
        models.append(f"{name} ({units} units" + (f", pretrained: {weights})" if weights else ")"))
    return {"algorithms": algorithm_names(), "models": models,
            "augmentations": sorted(AUGMENTATIONS), "data formats": format_names(),
            "configs": shipped_configs()}


def cache_list(cache_dir: str | Path | None = None) -> list:
    """The image caches, view banks and partial files of the cache folder (``$AEROSSL_CACHE_DIR``
    or ``~/.cache/aerossl`` unless given), least recently used first
    (:class:`~aerossl.data.cache_admin.CacheEntry`)."""
    from aerossl.data.cache import default_cache_dir
    from aerossl.data.cache_admin import cache_entries

    return cache_entries(Path(cache_dir) if cache_dir else default_cache_dir())


def cache_prune(cache_dir: str | Path | None = None, older_than_days: float | None = None,
                max_gb: float | None = None, everything: bool = False, dry_run: bool = False
                ) -> tuple[list, list[str]]:
    """Remove cache entries unused for ``older_than_days``, then the least recently used until
    the folder holds at most ``max_gb``; or all with ``everything``. Returns the entries removed
    (with ``dry_run``: that would be) and the problems met; a later run rebuilds what it needs.
    """
    from aerossl.data.cache_admin import remove, select_for_pruning

    if older_than_days is None and max_gb is None and not everything:
        raise ConfigError("cache prune: give older_than_days, max_gb or everything=True")
    for name, value in (("older_than_days", older_than_days), ("max_gb", max_gb)):
        if value is not None and value < 0:
            raise ConfigError(f"cache prune: {name} must be >= 0, got {value}")
    chosen = select_for_pruning(
        cache_list(cache_dir), older_than_days,
        None if max_gb is None else int(max_gb * 1e9), everything)
    if dry_run:
        return chosen, []
    problems = [f"{e.path}: {why}" for e in chosen if (why := remove(e))]
    return chosen, problems


__all__ = ["accept_labels", "cache_list", "cache_prune", "compare", "demo", "distill",
           "evaluate", "evaluate_old_task", "export", "find_config", "finetune", "inventory",
           "map_scene", "noisy_student", "predict", "pretrain", "pseudo_label", "report",
           "resume", "run_pipeline", "shipped_configs", "suggest_labels", "sweep", "train",
           "validate"]
