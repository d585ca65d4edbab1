"""Export a run's trained network to ONNX or TorchScript for inference outside aerossl.

The exported model takes **raw images** and returns **class probabilities**:

- input ``images``: ``N x C x S x S`` where ``S`` is the run's ``data.image_size`` (fixed; the
  caller resizes, e.g. with :func:`aerossl.data.reader.read_image`) and ``C`` its channels (3,
  RGB order). ``uint8`` in 0..255 by default, or ``float32`` in [0, 1] with
  ``input_dtype="float"``. The batch size ``N`` is dynamic.
- output ``probabilities``: ``float32`` ``N x K`` softmax over the run's classes, in the order
  listed in the sidecar ``model.json`` (``argmax`` is the predicted class).

Per-channel normalisation is part of the model; no other preprocessing is needed.

>>> from aerossl.runs.export import export_run
>>> export_run("runs/demo_fixmatch", "onnx")          # runs/demo_fixmatch/export/model.onnx
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from aerossl.errors import CheckpointError, ConfigError
from aerossl.models.onnx import OPSET, export_onnx
from aerossl.runs.loader import load_run_network

FORMATS = ("onnx", "torchscript")
INPUT_DTYPES = ("uint8", "float")
CHECKPOINTS = ("last", "best")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


class RawImageClassifier(nn.Module):
    """Raw images in, softmax probabilities out: ``softmax(network(x / 255))`` for uint8
    (``sigmoid`` per label for a multi-label run)."""

    def __init__(self, network: nn.Module, input_dtype: str = "uint8",
                 multilabel: bool = False) -> None:
        super().__init__()
        self.network = network
        self.scale_uint8 = input_dtype == "uint8"
        self.multilabel = multilabel

    def forward(self, images: Tensor) -> Tensor:
        x = images.to(torch.float32)
        if self.scale_uint8:
            x = x / 255.0
        logits = self.network(x)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def _export_onnx(model: nn.Module, example: Tensor, output: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install aerossl[export]"
                          ) from None
    tmp = output.with_name(output.name + ".tmp")
    export_onnx(model, example, str(tmp), INPUT_NAME, OUTPUT_NAME)
    try:
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)


def _export_torchscript(model: nn.Module, example: Tensor, output: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (example,), check_trace=False)
        tmp = output.with_name(output.name + ".tmp")
        torch.jit.save(traced, str(tmp))  # deprecated in favour of torch.export, still works
    tmp.replace(output)


def export_run(
    run_dir: str | Path,
    format: Literal["onnx", "torchscript"],
    output: str | Path | None = None,
    checkpoint: str = "last",
    input_dtype: Literal["uint8", "float"] = "uint8",
) -> Path:
    """Export a run's evaluated network (``last`` or ``best`` checkpoint); returns the file.

    The file (default ``RUN_DIR/export/model.onnx`` or ``model.pt``) maps ``images``
    (``N x C x S x S``, uint8 0..255 or float [0, 1]) to ``probabilities`` (``N x K``
    softmax). A ``model.json`` sidecar next to it lists the classes, image size, channels,
    input dtype and range, and the aerossl version; its top-level fields describe the latest
    export written to that folder and ``exports`` lists every file there (``model.onnx`` and
    ``model.pt`` share ``model.json``).
    """
    from aerossl.version import __version__

    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    if input_dtype not in INPUT_DTYPES:
        raise ConfigError(f"unknown input dtype {input_dtype!r}: use one of "
                          f"{', '.join(INPUT_DTYPES)}")
    run_dir = Path(run_dir)
    if format == "onnx":
        try:
            import onnx  # noqa: F401 - fail before loading anything
        except ImportError:
            raise ConfigError("ONNX export needs the onnx package: pip install aerossl[export]"
                              ) from None
    network, info = load_run_network(run_dir, checkpoint)
    multilabel = info.get("task") == "multilabel"
    model = RawImageClassifier(network, input_dtype, multilabel).eval()
    size, channels = info["image_size"], info["channels"]
    if input_dtype == "uint8":
        example = torch.randint(0, 256, (2, channels, size, size), dtype=torch.uint8)
    else:
        example = torch.rand(2, channels, size, size)
    output = Path(output) if output else run_dir / "export" / f"model{SUFFIX[format]}"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            if format == "onnx":
                _export_onnx(model, example, output)
            else:
                _export_torchscript(model, example, output)
    except OSError as e:
        raise CheckpointError(f"could not write {output}: {e}") from e
    sidecar = {
        "format": format,
        "file": output.name,
        "aerossl_version": __version__,
        "torch_version": torch.__version__,
        "run_dir": str(run_dir.resolve()),
        "checkpoint": checkpoint,
        "step": info["step"],
        "model": info["model"],
        "classes": info["classes"],
        "num_classes": len(info["classes"]),
        "image_size": size,
        "channels": channels,
        "channel_order": "RGB",
        "layout": "NCHW",
        "input": {"name": INPUT_NAME, "dtype": "uint8" if input_dtype == "uint8" else "float32",
                  "range": [0, 255] if input_dtype == "uint8" else [0.0, 1.0],
                  "shape": ["batch", channels, size, size],
                  "note": "resize to image_size x image_size first (aerossl uses bicubic)"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32",
                   "shape": ["batch", len(info["classes"])],
                   "meaning": ("independent sigmoid probability of each label (present when "
                               ">= 0.5)" if multilabel else "softmax probabilities over "
                               "classes") + " (index order of 'classes')"},
        "task": info.get("task", "multiclass"),
        "normalization": {"mean": info["mean"], "std": info["std"],
                          "note": "applied inside the model to images in [0, 1]"},
    }
    if format == "onnx":
        sidecar["opset"] = OPSET
    meta = output.with_suffix(".json")
    sidecar["exports"] = {**_previous_exports(meta, run_dir), output.name: {
        "format": format, "input_dtype": sidecar["input"]["dtype"], "checkpoint": checkpoint,
        "step": info["step"]}}
    try:
        meta.write_text(json.dumps(sidecar, indent=2))
    except OSError as e:
        raise CheckpointError(f"could not write {meta}: {e}") from e
    return output


def _previous_exports(meta: Path, run_dir: Path) -> dict[str, Any]:
    """Files listed by an existing sidecar of the same run (ONNX and TorchScript share one)."""
    try:
        old = json.loads(meta.read_text())
        if old.get("run_dir") == str(run_dir.resolve()) and isinstance(old.get("exports"), dict):
            return {k: v for k, v in old["exports"].items() if (meta.parent / k).is_file()}
    except (OSError, ValueError, AttributeError):
        pass
    return {}


__all__ = ["RawImageClassifier", "export_run", "load_run_network"]
