"""Shared fixtures: small image-folder datasets on disk and an isolated image cache."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

_SRC = Path(__file__).resolve().parents[1] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))


def write_image(
    path: Path, height: int = 32, width: int = 32, seed: int = 0, mode: str = "RGB"
) -> Path:
    """Write a smooth random image to ``path``; the format follows the extension.

    ``mode`` is a Pillow mode ("RGB", "L", "RGBA", "P"); TIFFs are written with tifffile
    (RGB or, for mode "L", grayscale).
    """
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = (yy * 3 + xx * 2 + seed * 17) % 64
    rgb = np.clip(base[None, None, :] + ramp[..., None] - 32, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        data = rgb[..., 0] if mode == "L" else rgb
        tifffile.imwrite(path, data, photometric="minisblack" if mode == "L" else "rgb")
        return path
    img = Image.fromarray(rgb, mode="RGB")
    if mode == "L":
        img = img.convert("L")
    elif mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save_kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    img.save(path, **save_kwargs)
    return path


def small_config(root: Path, out: Path, algorithm: str, **extra) -> dict:
    """A tiny, fast run config (32 px, small CNN, 12 steps); ``section__key=value`` overrides."""
    cfg = {
        "name": algorithm,
        "output_dir": str(out),
        "seed": 0,
        "data": {"root": str(root), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": algorithm},
        "train": {"steps": 12, "batch_size": 10, "mu": 2, "eval_every": 6, "log_every": 3,
                  "progress": False, "tensorboard": False, "lr": 0.05,
                  "amp": False},  # the same numerics on a GPU as on the CPU
        "report": [],
    }
    for key, value in extra.items():
        section, field = key.split("__")
        cfg[section][field] = value
    return cfg


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def stopped_and_resumed_state(cfg, tmp_path: Path) -> dict:
    """Train ``cfg`` in one go and, in another folder, stop it after step 7 and resume it;
    assert both end with the same algorithm state (every tensor equal) and the same final
    accuracy, and return the uninterrupted run's algorithm state for further checks."""
    import aerossl
    from aerossl.engine.checkpoint import load_checkpoint
    from aerossl.engine.trainer import Trainer

    full = Trainer(cfg, tmp_path / "full").fit()
    assert Trainer(cfg, tmp_path / "stopped").fit(until=7) is None
    resumed = aerossl.resume(tmp_path / "stopped")
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["algorithm"]
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["algorithm"]
    assert set(a) == set(b)
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    assert resumed.final_acc == full.final_acc
    return a


class FixedLogits(nn.Module):
    """A 'model' that returns prescribed logits per input row (keyed by the first pixel)."""

    def __init__(self, table: dict[float, list[float]]) -> None:
        super().__init__()
        self.table = table
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [self.table[round(float(v), 3)] for v in x[:, 0, 0, 0]]
        return torch.tensor(rows) * self.scale


@pytest.fixture
def make_image_folder() -> Callable[..., Path]:
    """Factory: ``make_image_folder(root, {"forest": 6, "river": 6}, ext=".png", size=32)``.

    Writes ``count`` images per class folder under ``root`` (files ``<class>NN<ext>``) and
    returns ``root``.
    """

    def make(root: Path, counts: dict[str, int], ext: str = ".png", size: int = 32) -> Path:
        for c, (name, count) in enumerate(sorted(counts.items())):
            for i in range(count):
                write_image(root / name / f"{name}{i:02d}{ext}", size, size, seed=100 * c + i)
        return root

    return make


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A dataset of 3 classes x 6 images in mixed formats, plus junk the scanner must skip.

    - ``alpha``: 6 JPEGs 40x40 (one in sub-folder ``sub/``) and a ``.DS_Store``
    - ``beta``: 6 PNGs 32x32 (RGB, grayscale, RGBA, palette) and ``.ipynb_checkpoints/x.jpg``
    - ``gamma``: 6 TIFFs (tifffile) 32x32, one grayscale, one 253 wide x 256 high, and
      ``notes.txt``
    - ``README.md`` at the root (not in a class; ignored, not counted)

    Skipped count is 3.
    """
    root = tmp_path / "images"
    for i in range(5):
        write_image(root / "alpha" / f"a{i}.jpg", 40, 40, seed=i)
    write_image(root / "alpha" / "sub" / "a5.JPG", 40, 40, seed=5)
    (root / "alpha" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    modes = ["RGB", "L", "RGBA", "P", "RGB", "RGB"]
    for i, mode in enumerate(modes):
        write_image(root / "beta" / f"b{i}.png", 32, 32, seed=10 + i, mode=mode)
    write_image(root / "beta" / ".ipynb_checkpoints" / "x.jpg", 32, 32, seed=99)

    for i in range(4):
        write_image(root / "gamma" / f"g{i}.tif", 32, 32, seed=20 + i)
    write_image(root / "gamma" / "g4.tiff", 32, 32, seed=24, mode="L")
    write_image(root / "gamma" / "g5_odd.tif", 256, 253, seed=25)
    (root / "gamma" / "notes.txt").write_text("field notes\n")

    (root / "README.md").write_text("# test images\n")
    return root


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same isolation for session- and module-scoped fixtures, which run before any
    function-scoped fixture: without it they filled the user's ~/.cache/aerossl."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEROSSL_CACHE_DIR", str(tmp_path_factory.mktemp("aerossl-cache-shared")))
        yield


@pytest.fixture(autouse=True)
def _isolated_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Point ``AEROSSL_CACHE_DIR`` at a fresh temp folder so tests never touch ~/.cache."""
    cache = tmp_path_factory.mktemp("aerossl-cache")
    monkeypatch.setenv("AEROSSL_CACHE_DIR", str(cache))
    return cache


DEMO_CLASSES = ["agricultural", "beach", "forest", "freeway", "harbor"]


@pytest.fixture(scope="session")
def five_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five visually distinct UC Merced classes from the demo set (40 real images each).

    Shared by every test module: tests read it and never write into it.
    """
    import shutil

    from aerossl.data import demo_dataset_path

    root = tmp_path_factory.mktemp("ucm5")
    for name in DEMO_CLASSES:
        shutil.copytree(demo_dataset_path() / name, root / name)
    return root
