"""The Python API: the same operations as the command line.

>>> import aerossl
>>> result = aerossl.train("demo_fixmatch", ["train.steps=300"])
>>> result.final_acc, result.report
>>> aerossl.evaluate(result.run_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aerossl.config import Config, apply_overrides, config_from_dict, load_config
from aerossl.engine.data import load_data
from aerossl.engine.evaluate import evaluate_model
from aerossl.engine.trainer import (
    RunResult,
    Trainer,
    load_run_config,
    load_run_network,
    resolve_device,
)
from aerossl.errors import CheckpointError, ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: Keys that may change when a run is resumed; others would break exact resume.
RESUME_OVERRIDABLE = {
    "train.steps", "train.device", "train.num_threads", "train.progress", "train.tensorboard",
    "train.eval_batch_size", "train.on_nonfinite", "data.cache_dir", "data.root",
}


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
    from aerossl.config import suggest

    hint = suggest(str(name_or_path), shipped_configs())
    raise ConfigError(f"config file not found: {path}{hint} (shipped configs: "
                      f"{', '.join(shipped_configs())})")


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


def evaluate(run_dir: str | Path, checkpoint: str = "last", device: str = "auto") -> dict:
    """Re-evaluate a run's saved weights (``last`` or ``best``) on its test split."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    dev = resolve_device(device)
    network, info = load_run_network(run_dir, checkpoint, dev)
    data = load_data(cfg.data, cfg.seed, split_dir=run_dir / "split")
    result = evaluate_model(network, data.images, data.labels, data.split.test,
                            cfg.train.eval_batch_size, dev, data.num_classes, task=data.task)
    return {"run_dir": str(run_dir), "checkpoint": checkpoint, "step": info["step"],
            "num_test": len(data.split.test), **result.to_dict(), "classes": data.classes}


def demo(steps_scale: float = 1.0, output_dir: str = "runs", device: str = "auto"
         ) -> dict[str, RunResult]:
    """Supervised-only and FixMatch on the embedded demo dataset, same labels."""
    results = {}
    for name in ("demo_supervised", "demo_fixmatch"):
        cfg = load_config(find_config(name), [f"output_dir={output_dir}",
                                              f"train.device={device}"])
        steps = max(1, int(cfg.train.steps * steps_scale))
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), [
            f"train.steps={steps}", f"train.eval_every={min(cfg.train.eval_every, steps)}"]))
        results[name] = Trainer(cfg).fit()
    return results


__all__ = ["demo", "evaluate", "find_config", "resume", "shipped_configs", "train"]
