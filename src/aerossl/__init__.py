"""aerossl: semi-supervised deep learning for aerial and satellite scene images."""

from aerossl.api import (
    demo,
    distill,
    evaluate,
    evaluate_old_task,
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
    sweep,
    train,
)
from aerossl.compare import compare_runs, write_comparison
from aerossl.config import Config, load_config
from aerossl.data.formats import DataFormat, register_format
from aerossl.engine.trainer import RunResult
from aerossl.errors import AerosslError, CheckpointError, ConfigError, DataError
from aerossl.export import export_run
from aerossl.predict import predict_paths
from aerossl.runs import load_run_network

__version__ = "0.1.0"

__all__ = [
    "AerosslError",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "DataFormat",
    "RunResult",
    "compare_runs",
    "demo",
    "distill",
    "evaluate",
    "evaluate_old_task",
    "export_run",
    "find_config",
    "finetune",
    "load_config",
    "load_run_network",
    "map_scene",
    "noisy_student",
    "predict_paths",
    "pretrain",
    "pseudo_label",
    "register_format",
    "resume",
    "run_pipeline",
    "shipped_configs",
    "suggest_labels",
    "sweep",
    "train",
    "write_comparison",
]
