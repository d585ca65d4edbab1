"""Export to ONNX and TorchScript: the files give PyTorch's probabilities on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import aerossl
from aerossl.cli import build_parser
from aerossl.data import demo_dataset_path
from aerossl.data.reader import read_image
from aerossl.errors import CheckpointError, ConfigError
from aerossl.runs.export import export_run, load_run_network

CLASSES = ["agricultural", "beach", "forest", "freeway", "harbor"]
SIZE = 32

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, five_classes: Path) -> Path:
    """A tiny real supervised run on five demo classes at 32 px."""
    root = five_classes
    cfg = {
        "name": "export", "output_dir": str(tmp_path_factory.mktemp("runs")), "seed": 0,
        "data": {"root": str(root), "image_size": SIZE, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": "supervised"},
        "train": {"steps": 4, "batch_size": 10, "eval_every": 4, "log_every": 2,
                  "progress": False, "tensorboard": False, "lr": 0.05},
        "report": [],
    }
    return aerossl.train(cfg).run_dir


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Seven real demo images (uint8, N x 3 x 32 x 32), across the five classes."""
    files = [sorted((demo_dataset_path() / c).iterdir())[i] for i in (0, 1) for c in CLASSES]
    return np.stack([read_image(f, SIZE) for f in files[:7]])


def reference(run_dir: Path, images: np.ndarray) -> np.ndarray:
    """PyTorch: the saved Normalized network on images / 255, softmax."""
    network, _ = load_run_network(run_dir)
    with torch.no_grad():
        logits = network(torch.from_numpy(images).float() / 255)
    return torch.softmax(logits, dim=1).numpy()


def test_onnx_matches_pytorch_for_any_batch_size(run_dir: Path, images: np.ndarray) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = export_run(run_dir, "onnx")
    assert path == run_dir / "export" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    expected = reference(run_dir, images)
    for n in (1, 7):
        (probs,) = session.run(None, {"images": images[:n]})
        assert probs.shape == (n, len(CLASSES))
        assert np.abs(probs - expected[:n]).max() < 1e-4
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    meta = json.loads((run_dir / "export" / "model.json").read_text())
    assert meta["classes"] == CLASSES
    assert meta["image_size"] == SIZE and meta["channels"] == 3
    assert meta["input"]["dtype"] == "uint8" and meta["output"]["name"] == "probabilities"
    assert meta["aerossl_version"] == aerossl.__version__


def test_torchscript_matches_pytorch_and_float_input(run_dir: Path, images: np.ndarray,
                                                     tmp_path: Path) -> None:
    expected = reference(run_dir, images)
    path = export_run(run_dir, "torchscript")
    assert path == run_dir / "export" / "model.pt"
    loaded = torch.jit.load(str(path))
    for n in (1, 7):
        with torch.no_grad():
            probs = loaded(torch.from_numpy(images[:n])).numpy()
        assert np.abs(probs - expected[:n]).max() < 1e-4
    meta = json.loads((run_dir / "export" / "model.json").read_text())
    assert meta["classes"] == CLASSES and "model.pt" in meta["exports"]

    out = export_run(run_dir, "torchscript", tmp_path / "f.pt", checkpoint="best",
                     input_dtype="float")
    with torch.no_grad():
        floats = torch.jit.load(str(out))(torch.from_numpy(images).float() / 255).numpy()
    assert floats.shape == (7, len(CLASSES)) and np.isfinite(floats).all()
    assert json.loads((tmp_path / "f.json").read_text())["input"]["range"] == [0.0, 1.0]


def test_cli_parser_and_errors(run_dir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["export", str(run_dir), "--format", "torchscript",
                              "--output", str(tmp_path / "m.pt")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m.pt")
    with pytest.raises(ConfigError, match="tflite"):
        export_run(run_dir, "tflite")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="int16"):
        export_run(run_dir, "onnx", input_dtype="int16")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="nowhere"):
        export_run(tmp_path / "nowhere", "onnx")
