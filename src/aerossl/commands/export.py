"""``aerossl export RUN_DIR --format onnx|torchscript``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aerossl import api
from aerossl.runs.export import FORMATS, INPUT_DTYPES
from aerossl.runs.loader import CHECKPOINTS


def _export(args: argparse.Namespace) -> int:
    print(api.export(args.run_dir, args.format, args.output, args.checkpoint, args.input_dtype))
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="export a run's model to ONNX or TorchScript (raw images -> probabilities)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--format", required=True, choices=FORMATS, help="file format")
    p.add_argument("--output", type=Path, default=None,
                   help="output file (default RUN_DIR/export/model.onnx or model.pt)")
    p.add_argument("--checkpoint", default="last", choices=CHECKPOINTS,
                   help="which saved weights (default last)")
    p.add_argument("--input-dtype", dest="input_dtype", default="uint8", choices=INPUT_DTYPES,
                   help="uint8 images in 0..255 (default) or float images in [0, 1]")
    p.set_defaults(func=_export)
