"""aerossl: semi-supervised deep learning for aerial and satellite scene images."""

from aerossl.api import (
    demo,
    distill,
    evaluate,
    find_config,
    finetune,
    map_scene,
    noisy_student,
    pretrain,
    pseudo_label,
    resume,
    run_pipeline,
    shipped_configs,
    suggest_labels,
    train,
)
from aerossl.compare import compare_runs, write_comparison
from aerossl.config import Config, load_config
from aerossl.engine.trainer import RunResult
from aerossl.errors import AerosslError, CheckpointError, ConfigError, DataError
from aerossl.export import export_run
from aerossl.predict import predict_paths

__version__ = "0.1.0"

__all__ = [
    "AerosslError",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "RunResult",
    "compare_runs",
    "demo",
    "distill",
    "evaluate",
    "export_run",
    "find_config",
    "finetune",
    "load_config",
    "map_scene",
    "noisy_student",
    "predict_paths",
    "pretrain",
    "pseudo_label",
    "resume",
    "run_pipeline",
    "shipped_configs",
    "suggest_labels",
    "train",
    "write_comparison",
]
