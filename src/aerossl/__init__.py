"""aerossl: semi-supervised deep learning for aerial and satellite scene images."""

from aerossl.api import demo, evaluate, find_config, resume, shipped_configs, train
from aerossl.config import Config, load_config
from aerossl.engine.trainer import RunResult
from aerossl.errors import AerosslError, CheckpointError, ConfigError, DataError

__version__ = "0.1.0"

__all__ = [
    "AerosslError",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "RunResult",
    "demo",
    "evaluate",
    "find_config",
    "load_config",
    "resume",
    "shipped_configs",
    "train",
]
