"""Trusting a run folder: one writer at a time, divergence handling, write failures name paths."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import aerossl
from aerossl.algorithms.fixmatch import FixMatch
from aerossl.engine import checkpoint as checkpoint_module
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.engine.lock import RunLock
from aerossl.engine.logger import MetricLogger
from aerossl.engine.trainer import Trainer
from aerossl.errors import AerosslError, CheckpointError
from aerossl.validate import config_from_dict


def small_config(root: Path, out: Path, **train) -> aerossl.Config:
    """A FixMatch run of 12 steps on 32-pixel images (about a second on a CPU)."""
    return config_from_dict({
        "name": "run", "output_dir": str(out), "seed": 0,
        "data": {"root": str(root), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": "fixmatch", "threshold": 0.5},
        "train": {"steps": 12, "batch_size": 10, "mu": 2, "eval_every": 6, "log_every": 3,
                  "progress": False, "tensorboard": False, "lr": 0.05, **train},
        "report": [],
    })


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def on_step(monkeypatch: pytest.MonkeyPatch, hook: Callable) -> None:
    """Call ``hook(ctx, out)`` after every FixMatch training step (it may change ``out``)."""
    original = FixMatch.training_step

    def step(self, batch, ctx):
        out = original(self, batch, ctx)
        hook(ctx, out)
        return out

    monkeypatch.setattr(FixMatch, "training_step", step)


def nan_at(step: int) -> Callable:
    """A hook that makes the unsupervised loss NaN at 0-based step ``step``."""
    def hook(ctx, out) -> None:
        if ctx.step == step:
            out.log["loss/unsup"] = torch.tensor(float("nan"))
            out.loss = out.loss * float("nan")
    return hook


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = load_checkpoint(a)["algorithm"], load_checkpoint(b)["algorithm"]
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def write_lock(run_dir: Path, pid: int) -> None:
    """A lock file as aerossl wrote it before it used OS locks (a JSON note of a dead pid)."""
    (run_dir / ".lock").write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "started": "2024-01-01 00:00:00"}))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def is_free(run_dir: Path) -> bool:
    """Nobody holds the run folder's lock (and no holder's note is left behind)."""
    return RunLock(run_dir).holder() is None and not (run_dir / ".lock.holder").exists()


HOLD = ("import sys, time; from aerossl.engine.lock import RunLock; "
        "lock = RunLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(60)")


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that takes the folder's lock and keeps it (kill it when done)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


# ------------------------------------------------------------------------------ one writer


def test_a_folder_held_by_a_live_process_is_refused_untouched(
    five_classes: Path, tmp_path: Path
) -> None:
    cfg = small_config(five_classes, tmp_path)
    run = tmp_path / "run"
    Trainer(cfg, run).fit(until=6)
    assert is_free(run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    holder = hold_lock(run)
    try:
        with pytest.raises(CheckpointError, match=rf"run folder .*run is in use by process "
                                                  rf"{holder.pid} on {socket.gethostname()} "
                                                  rf"\(started 20"):
            aerossl.resume(run)
        with pytest.raises(CheckpointError, match="in use by process"):
            Trainer(cfg, run)  # a new run in that folder is refused too
    finally:
        holder.kill()
        holder.wait()
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock.holder"}
    assert after == before


def test_the_same_process_cannot_take_a_folder_twice(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.holder_path.read_text())["pid"] == os.getpid()
        assert RunLock(tmp_path).holder()["pid"] == os.getpid()
        with pytest.raises(CheckpointError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert is_free(tmp_path)


@pytest.mark.parametrize("left", ["killed", "old_lock_file", "garbled_note"])
def test_a_killed_holder_or_a_left_over_file_does_not_block_the_folder(
    five_classes: Path, tmp_path: Path, left: str
) -> None:
    run = tmp_path / "run"
    trainer = Trainer(small_config(five_classes, tmp_path, steps=6), run)
    if left == "killed":  # the OS releases the lock of a process killed without clean-up
        holder = hold_lock(run)
        assert not is_free(run)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert (run / ".lock.holder").exists()  # its note stays, but the lock is free
    elif left == "old_lock_file":
        write_lock(run, dead_pid())
    else:
        (run / ".lock.holder").write_text("{not json")
    result = trainer.fit()
    assert result is not None and result.steps == 6
    assert is_free(run)


def test_the_lock_is_held_while_training_and_released_by_sigterm_and_ctrl_c(
    five_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    seen: list[int] = []

    def hook(ctx, out) -> None:
        seen.append(RunLock(run).holder()["pid"])
        if ctx.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop finishes this step and checkpoints

    on_step(monkeypatch, hook)
    with pytest.raises(KeyboardInterrupt):
        Trainer(small_config(five_classes, tmp_path), run).fit()
    assert seen == [os.getpid()] * 3 and is_free(run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3

    def interrupt(ctx, out) -> None:
        if ctx.step == 5:
            raise KeyboardInterrupt

    on_step(monkeypatch, interrupt)
    with pytest.raises(KeyboardInterrupt):
        aerossl.resume(run)
    assert is_free(run)


# ------------------------------------------------------------------------------ divergence


def test_a_nan_loss_stops_logs_the_batch_and_keeps_the_last_good_checkpoint(
    five_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.pt"
    saved: list[bytes] = []
    inject = nan_at(8)

    def hook(ctx, out) -> None:
        if ctx.step == 8:
            saved.append(last.read_bytes())
        inject(ctx, out)

    on_step(monkeypatch, hook)
    with pytest.raises(AerosslError, match=r"non-finite loss at step 9: .*loss/unsup.*nan.*"
                                           r"diverged.*last good checkpoint is .*last\.pt"):
        Trainer(small_config(five_classes, tmp_path), run).fit()
    assert last.read_bytes() == saved[0] and load_checkpoint(last)["step"] == 6
    assert is_free(run)
    row = read_metrics(run)[-1]
    assert row["split"] == "diverged" and row["step"] == 9
    assert row["loss"] is None and row["loss/unsup"] is None and row["loss/sup"] > 0
    for view in ["labeled/weak", "unlabeled/weak", "unlabeled/strong"]:
        assert row[f"{view}/nonfinite"] == 0
        assert row[f"{view}/min"] <= row[f"{view}/mean"] <= row[f"{view}/max"]
        assert row[f"{view}/std"] > 0

    monkeypatch.undo()
    resumed = aerossl.resume(run)  # the diverged row is after last.pt and is dropped
    assert resumed.steps == 12 and "diverged" not in {m["split"] for m in read_metrics(run)}


def test_skip_drops_the_update_of_a_nan_step_and_resumes_exactly(
    five_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config(five_classes, tmp_path, on_nonfinite="skip")
    params: dict[int, list[torch.Tensor]] = {}
    inject = nan_at(3)
    trainer = Trainer(cfg, tmp_path / "full")

    def hook(ctx, out) -> None:
        params[ctx.step] = [p.detach().clone() for p in trainer.algorithm.parameters()]
        inject(ctx, out)

    on_step(monkeypatch, hook)
    full = trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(params[3], params[4], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(params[4], params[5], strict=True))
    rows = [m for m in read_metrics(full.run_dir) if m["split"] == "train"]
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 1]
    assert all(r["loss"] is not None for r in rows)
    assert load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["skipped_steps"] == 1
    assert full.final_acc > 0

    on_step(monkeypatch, inject)
    Trainer(cfg, tmp_path / "stopped").fit(until=7)
    resumed = aerossl.resume(tmp_path / "stopped")
    assert same_weights(full.run_dir / "checkpoints" / "last.pt",
                        resumed.run_dir / "checkpoints" / "last.pt")
    assert load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["skipped_steps"] == 1
    assert resumed.final_acc == full.final_acc


# ------------------------------------------------------------------------------ write failures


def test_an_unwritable_output_folder_names_the_path(five_classes: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"could not write .*file/run"):
        Trainer(small_config(five_classes, tmp_path / "file"))


def test_unwritable_metrics_and_tensorboard_logs_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "a" / "metrics.jsonl").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"could not write .*a/metrics\.jsonl"):
        MetricLogger(tmp_path / "a", tensorboard=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tensorboard").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"could not write .*b/tensorboard"):
        MetricLogger(tmp_path / "b", tensorboard=True)

    class FullDisk(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    logger = MetricLogger(tmp_path, tensorboard=False)
    logger._file.close()
    logger._file = FullDisk()
    with pytest.raises(CheckpointError, match=rf"could not write {tmp_path}/metrics\.jsonl: No "
                                              rf"space left"):
        logger.log(1, "train", {"loss": 1.0})


READ_ONLY_CHECK = """
import json, os, sys
from pathlib import Path
import aerossl
from aerossl.validate import config_from_dict
from aerossl.engine.trainer import Trainer
from aerossl.errors import CheckpointError
run, cfg = Path(sys.argv[1]), config_from_dict(json.loads(sys.argv[2]))
result = {"writable": os.access(run, os.W_OK)}
for name, call in (("resume", lambda: aerossl.resume(run)), ("new", lambda: Trainer(cfg))):
    try:
        call()
        result[name] = None
    except CheckpointError as e:
        result[name] = str(e)
print(json.dumps(result))
"""


def drop_root_file_powers() -> None:
    """In a child before exec: drop the capabilities that let root ignore file permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) from the bounding set, so the program
    it runs obeys chmod like any user while keeping root's user id (and its access to the
    test's root-owned temporary folders)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_a_read_only_run_folder_names_the_path(five_classes: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(small_config(five_classes, tmp_path), run).fit(until=6)
    out = tmp_path / "ro"
    out.mkdir()
    folders = [run, run / "checkpoints", out]
    for folder in folders:
        folder.chmod(0o555)
    try:  # in a child process without root's power over file permissions (CI runs as root)
        proc = subprocess.run(
            [sys.executable, "-c", READ_ONLY_CHECK, str(run),
             json.dumps(small_config(five_classes, out).to_dict())],
            capture_output=True, text=True, timeout=300,
            preexec_fn=drop_root_file_powers if os.geteuid() == 0 else None,
        )
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"cannot drop root's file capabilities here: {e}")
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["writable"] is False
    assert re.search(rf"{run}.*(Permission|Read-only)", result["resume"]), result
    assert re.search(rf"could not write {out}/run", result["new"]), result


def test_a_full_disk_during_a_checkpoint_names_the_path_and_keeps_the_previous_one(
    five_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config(five_classes, tmp_path, steps=18)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if obj.get("step") == 12 and "optimizer" in obj:
            f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match=rf"could not write checkpoint {run}/checkpoints/"
                                              rf"last\.pt: .*No space left"):
        Trainer(cfg, run).fit()
    monkeypatch.undo()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert is_free(run)

    resumed = aerossl.resume(run)
    full = Trainer(cfg, tmp_path / "full").fit()
    assert resumed.steps == 18 and resumed.final_acc == full.final_acc
    assert same_weights(run / "checkpoints" / "last.pt", full.run_dir / "checkpoints" / "last.pt")
