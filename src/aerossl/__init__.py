"""aerossl: semi-supervised deep learning for aerial and satellite scene images."""

from aerossl.api import (
    cache_list,
    cache_prune,
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
from aerossl.config import Config
from aerossl.data.formats import DataFormat, register_format
from aerossl.engine.run_folder import RunResult
from aerossl.errors import AerosslError, CheckpointError, ConfigError, DataError
from aerossl.runs.compare import compare_runs, write_comparison
from aerossl.runs.export import export_run
from aerossl.runs.loader import load_run_network
from aerossl.runs.predict import predict_paths
from aerossl.validate import load_config
from aerossl.version import __version__

__all__ = [
    "AerosslError",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "DataFormat",
    "RunResult",
    "__version__",
    "cache_list",
    "cache_prune",
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
