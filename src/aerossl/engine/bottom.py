"""What computes the view bank's frozen bottom: PyTorch eager, or ONNX Runtime on a CPU.

The bank pushes every banked draw through the frozen units once; on a CPU that was over a
third of a pretrained run's time. ONNX Runtime runs the same units (exported from the loaded
weights, in memory) 2.3 (one thread) to 2.5 (two) times as fast as PyTorch eager at 224 px on
EfficientNet-Lite0 (``benchmarks/results/bank_speed.md``), with outputs within 1e-4 of eager
and bit-identical whatever the batch size or thread count, so a bank's content still does not
depend on how it was filled. ``bank.backend`` picks (``auto``: ONNX Runtime on a CPU when it is
installed); the backend's name and version are part of the bank's key.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from aerossl.errors import ConfigError
from aerossl.models.normalize import Normalized
from aerossl.models.onnx import export_onnx

log = logging.getLogger("aerossl")

class _Bottom(nn.Module):
    """``network.forward_bottom(x, entry)`` as a module (what is exported)."""

    def __init__(self, network: Normalized, entry: int) -> None:
        super().__init__()
        self.network, self.entry = network, entry

    def forward(self, x: Tensor) -> Tensor:
        return self.network.forward_bottom(x, self.entry)


def _onnxruntime_version() -> str | None:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)


def backend_name(backend: str, device: torch.device) -> str:
    """The backend ``bank.backend`` resolves to on ``device``, with its version when it is not
    PyTorch (``torch`` or ``onnxruntime-1.23.2``): what the bank's key records."""
    if backend == "torch":
        return "torch"
    version = _onnxruntime_version()
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError(f"bank.backend: onnxruntime runs the bank on the CPU; this run is "
                              f"on {device} (use bank.backend: auto or torch)")
        if version is None:
            raise ConfigError("bank.backend: onnxruntime needs the onnx and onnxruntime "
                              "packages: pip install aerossl[pretrained]")
    elif device.type != "cpu" or version is None:
        return "torch"
    return f"onnxruntime-{version}"


def frozen_bottom(network: Normalized, entry: int, name: str,
                  example: Tensor) -> Callable[[Tensor], Tensor]:
    """A function from [0, 1] images to the input of unit ``entry`` for the backend ``name``
    (from :func:`backend_name`); ``example`` is a batch of images (shape and device)."""
    if name == "torch":
        return lambda x: network.forward_bottom(x, entry)
    import onnxruntime

    was_training = network.training
    network.eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        export_onnx(_Bottom(network, entry), example[:1].float(), buffer, "x", "h")
    network.train(was_training)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(buffer.getvalue(), options,
                                           providers=["CPUExecutionProvider"])
    log.info("view bank: frozen units run by %s on %d thread(s)", name,
             options.intra_op_num_threads)

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {"x": x.float().contiguous().numpy()})[0])

    return run
