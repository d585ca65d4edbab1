"""ONNX export of a network with a dynamic batch axis: what ``aerossl export`` writes and what
the view bank's ONNX Runtime backend (:mod:`aerossl.engine.bottom`) runs."""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stdout
from typing import BinaryIO

import torch
from torch import Tensor, nn

OPSET = 17


def export_onnx(model: nn.Module, example: Tensor, target: str | BinaryIO, input_name: str,
                output_name: str) -> None:
    """Trace ``model`` on ``example`` into ONNX at ``target`` (a path or a byte buffer), the
    first axis of its input and output dynamic (TorchScript exporter, :data:`OPSET`)."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(
            model, (example,), target, dynamo=False, opset_version=OPSET,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        )
