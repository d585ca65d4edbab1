"""Atomic checkpoints that refuse pickled code, and resumable index streams."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from aerossl.data.sampler import IndexStream
from aerossl.engine import checkpoint as ckpt
from aerossl.errors import CheckpointError


def test_checkpoint_roundtrip_keeps_tensors_and_plain_values(tmp_path: Path) -> None:
    state = {"step": 3, "w": torch.arange(4.0), "nested": {"lr": [0.1, 0.2]}}
    ckpt.save_checkpoint(state, tmp_path / "last.pt")
    loaded = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["w"], state["w"])
    assert loaded["nested"] == {"lr": [0.1, 0.2]}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_failed_checkpoint_write_leaves_the_previous_one_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint({"step": 1}, path)

    def full_disk(obj, f) -> None:
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*last.pt"):
        ckpt.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class Payload:
    def __reduce__(self):
        return (Path("/tmp/aerossl-pwned").touch, ())


def test_checkpoint_carrying_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "step": 0, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"possibly code\), which are refused"):
        ckpt.load_checkpoint(path)
    assert not Path("/tmp/aerossl-pwned").exists()


def test_files_that_are_not_checkpoints_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="a.pt is not a loadable"):
        ckpt.load_checkpoint(tmp_path / "a.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="b.pt is not an aerossl checkpoint"):
        ckpt.load_checkpoint(tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "c.pt")
    (tmp_path / "e.pt").write_text("hello")  # torch's unpickler raises KeyError on this one
    with pytest.raises(CheckpointError, match="e.pt is not a loadable"):
        ckpt.load_checkpoint(tmp_path / "e.pt")
    with open(tmp_path / "d.pt", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(tmp_path / "d.pt")


def test_index_stream_covers_every_index_once_per_epoch() -> None:
    stream = IndexStream(np.arange(10, 20), batch_size=5, seed=0, stream_id=0)
    seen = torch.cat([stream.next() for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(10, 20))


def test_index_stream_is_seed_deterministic_and_resumes_exactly() -> None:
    a = IndexStream(np.arange(7), 3, seed=1, stream_id=0)
    b = IndexStream(np.arange(7), 3, seed=1, stream_id=0)
    first = [a.next() for _ in range(4)]
    assert all(torch.equal(x, b.next()) for x in first)
    state = a.state_dict()
    expected = [a.next() for _ in range(5)]
    c = IndexStream(np.arange(7), 3, seed=1, stream_id=0)
    c.load_state_dict(state)
    assert all(torch.equal(x, c.next()) for x in expected)
    other = IndexStream(np.arange(7), 3, seed=2, stream_id=0)
    assert not all(torch.equal(x, other.next()) for x in first)


def test_index_stream_ranks_split_the_global_batch() -> None:
    ranks = [IndexStream(np.arange(16), 8, seed=0, stream_id=1, rank=r, world_size=2)
             for r in range(2)]
    single = IndexStream(np.arange(16), 8, seed=0, stream_id=1)
    for _ in range(3):
        parts = [r.next() for r in ranks]
        whole = single.next()
        assert sorted(torch.cat(parts).tolist()) == sorted(whole.tolist())
        assert not set(parts[0].tolist()) & set(parts[1].tolist())
