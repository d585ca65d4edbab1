"""Atomic checkpoint files that load without unpickling code, and atomic output files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from aerossl.errors import CheckpointError

FORMAT_VERSION = 1


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised inside the block into a CheckpointError naming the file that failed
    (``path`` when the error does not say)."""
    try:
        yield
    except OSError as e:
        raise CheckpointError(f"could not write {e.filename or path}: {e.strerror or e}") from e


@contextmanager
def staged_files(targets: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """Temporary paths beside ``targets`` (``.NAME.part``) to write in the block; renamed onto
    the targets together when the block succeeds, removed in any case, so that no output is
    left half-written."""
    temps = {key: path.with_name(f".{path.name}.part") for key, path in targets.items()}
    try:
        yield temps
        for key, tmp in temps.items():
            os.replace(tmp, targets[key])
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    The previous file at ``path`` stays valid until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code in the file is ever executed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load on garbage raises almost anything (KeyError, ...)
        if "Weights only load failed" in str(e):
            reason = ("it holds pickled objects other than tensors and plain values (possibly "
                      "code), which are refused")
        else:
            reason = f"it may be truncated or not a checkpoint ({type(e).__name__}: " \
                     f"{str(e).splitlines()[0][:200] if str(e) else ''})"
        raise CheckpointError(f"{path} is not a loadable aerossl checkpoint: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an aerossl checkpoint (format {FORMAT_VERSION})")
    return state
