"""Fault injection: training processes SIGKILLed at random steps and in the middle of checkpoint
writes, then resumed, end exactly where an uninterrupted run ends.

The processes are forked by ``tests/fault_runner.py --serve`` (torch is imported once), and a
checkpoint write is paused there (``os.fsync`` / ``os.replace`` of the checkpoint module) so a
kill lands inside it. Every run uses the same tiny config: 5 real UC Merced classes, 32 px,
100 FixMatch steps, a checkpoint every 10 steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import aerossl
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.errors import CheckpointError

pytestmark = pytest.mark.slow  # SIGKILLed training processes (CI runs them: pytest -m slow)

RUNNER = Path(__file__).with_name("fault_runner.py")
STEPS, EVAL_EVERY = 100, 10
TIMEOUT = 120.0


class Runner:
    """Client of ``fault_runner.py --serve``: one child process at a time."""

    def __init__(self, workdir: Path, cache: Path) -> None:
        env = {**os.environ, "AEROSSL_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(RUNNER), "--serve"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.workdir = workdir
        self.pid: int | None = None
        self.log: Path | None = None
        self.kills = 0
        self._n = 0

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "fault runner died"
        return json.loads(line)

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        assert self.pid is None and self.proc.stdin is not None
        self._n += 1
        self.log = self.workdir / f"child{self._n}.log"
        self.proc.stdin.write(json.dumps({"argv": argv, "env": env or {},
                                          "log": str(self.log)}) + "\n")
        self.proc.stdin.flush()
        self.pid = self._read()["pid"]
        return self.pid

    def wait(self) -> int:
        assert self.pid is not None
        reply = self._read()
        assert reply["pid"] == self.pid
        self.pid = None
        return reply["rc"]

    def kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        self.kills += 1
        assert self.wait() == -signal.SIGKILL

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        self.start(argv, env)
        return self.wait()

    def output(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""

    def wait_for(self, ready, what: str) -> None:
        """Poll until ``ready()``; fail (with the child's output) on timeout."""
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output()}"
            time.sleep(0.01)

    def close(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, five_classes: Path):
    """The fork server, the config file and the uninterrupted reference run."""
    base = tmp_path_factory.mktemp("faults")
    root = five_classes
    cfg = {
        "name": "run", "output_dir": str(base / "runs"), "seed": 0,
        "data": {"root": str(root), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": "fixmatch", "threshold": 0.5},
        "train": {"steps": STEPS, "batch_size": 10, "mu": 2, "eval_every": EVAL_EVERY,
                  "log_every": 1, "lr": 0.05, "num_threads": 1, "progress": False,
                  "tensorboard": False},
        "report": [],
    }
    cfg_path = base / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    runner = Runner(base, base / "cache")
    try:
        assert runner.run(["train", str(cfg_path), "name=reference"]) == 0, runner.output()
        yield {"runner": runner, "cfg": cfg_path, "runs": base / "runs",
               "reference": base / "runs" / "reference"}
    finally:
        runner.close()


def metric_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line being written
                rows.append(json.loads(line))
    return rows


def max_step(run_dir: Path) -> int:
    return max((r["step"] for r in metric_rows(run_dir)), default=0)


def untimed(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")}
            for r in metric_rows(run_dir)]


def assert_same_as_reference(run_dir: Path, reference: Path) -> None:
    a = load_checkpoint(reference / "checkpoints" / "last.pt")
    b = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert b["step"] == STEPS
    for part in ("algorithm", "eval_model"):
        assert a[part].keys() == b[part].keys()
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    ea = json.loads((reference / "eval.json").read_text())
    eb = json.loads((run_dir / "eval.json").read_text())
    assert eb["accuracy"] == ea["accuracy"]
    assert eb["confusion_matrix"] == ea["confusion_matrix"]
    assert untimed(run_dir) == untimed(reference)


def test_sigkill_at_random_steps_then_resume_ends_identical(env) -> None:
    runner: Runner = env["runner"]
    run = env["runs"] / "random"
    rng = random.Random(1234)
    runner.start(["train", str(env["cfg"]), "name=random"])
    # the first kill comes after the first checkpoint (step 10), so there is one to resume from
    target = rng.randint(EVAL_EVERY + 1, 30)
    kills = 0
    while True:
        runner.wait_for(lambda t=target: max_step(run) >= t or not runner_alive(runner),
                        f"step {target}")
        if max_step(run) < target:
            pytest.fail(f"the run ended (rc {runner.wait()}) before step {target}:\n"
                        f"{runner.output()}")
        runner.kill()
        kills += 1
        resumed_from = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
        assert resumed_from % EVAL_EVERY == 0
        assert target - EVAL_EVERY <= resumed_from <= max_step(run)
        target = max_step(run) + rng.randint(1, 12)
        if kills == 9 or target >= STEPS - 1:
            break
        runner.start(["train", "--resume", str(run)])
    assert kills == 9
    assert runner.run(["train", "--resume", str(run)]) == 0, runner.output()
    assert_same_as_reference(run, env["reference"])


def runner_alive(runner: Runner) -> bool:
    """True while the child runs (it is reaped only by ``Runner.wait``)."""
    assert runner.pid is not None
    try:
        with open(f"/proc/{runner.pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_in_save(runner: Runner, argv: list[str], marker: Path, where: str, nth: int,
                 name: str = "last.pt") -> str:
    """Start a child that pauses in its ``nth`` write of ``name`` at ``where``; SIGKILL it there.

    Returns the path of the file being written.
    """
    marker.unlink(missing_ok=True)
    runner.start(argv, {"FAULT_PAUSE_AT": where, "FAULT_PAUSE_NTH": str(nth),
                        "FAULT_PAUSE_NAME": name, "FAULT_MARKER": str(marker)})
    runner.wait_for(lambda: marker.exists() or not runner_alive(runner), "the paused write")
    assert marker.exists(), f"the child ended before the paused write:\n{runner.output()}"
    runner.kill()
    return marker.read_text()


def test_sigkill_during_checkpoint_writes_keeps_the_previous_checkpoint(env) -> None:
    runner: Runner = env["runner"]
    run = env["runs"] / "in_save"
    marker = env["runs"] / "in_save.marker"
    rng = random.Random(99)
    ckpt = run / "checkpoints" / "last.pt"
    argv = ["train", str(env["cfg"]), "name=in_save"]
    step = 0  # step of last.pt
    kills = 0
    while kills < 8:
        where = ["fsync", "replace"][kills % 2]
        nth = 2 if step == 0 else rng.randint(1, 2)
        if step + nth * EVAL_EVERY > STEPS:
            break
        target = kill_in_save(runner, argv, marker, where, nth)
        kills += 1
        assert Path(target).parent == ckpt.parent
        # the interrupted write left its temp file behind; last.pt is the one written before
        assert list(ckpt.parent.glob(".last.pt.*.tmp")), where
        state = load_checkpoint(ckpt)
        assert state["step"] == step + (nth - 1) * EVAL_EVERY, (where, nth, step)
        step = state["step"]
        argv = ["train", "--resume", str(run)]
    assert kills == 8
    assert runner.run(argv) == 0, runner.output()
    assert_same_as_reference(run, env["reference"])


def test_killed_before_the_first_checkpoint_cannot_resume_and_restarts_anew(env) -> None:
    runner: Runner = env["runner"]
    runs: Path = env["runs"]
    # killed at a random early step, and killed while writing the very first last.pt
    runner.start(["train", str(env["cfg"]), "name=early"])
    target = random.Random(7).randint(1, EVAL_EVERY - 1)
    runner.wait_for(lambda: max_step(runs / "early") >= target, f"step {target}")
    runner.kill()
    kill_in_save(runner, ["train", str(env["cfg"]), "name=early_save"],
                 runs / "early.marker", "replace", 1)
    for name in ("early", "early_save"):
        run = runs / name
        assert (run / "config.yaml").is_file()
        assert not (run / "checkpoints" / "last.pt").exists()
        with pytest.raises(CheckpointError, match="checkpoint not found"):
            aerossl.resume(run)
        assert runner.run(["train", "--resume", str(run)]) == 2
        assert "error: checkpoint not found" in runner.output()
    # starting anew works, in a fresh folder next to the broken one
    assert runner.run(["train", str(env["cfg"]), "name=early", "train.steps=20"]) == 0, (
        runner.output())
    assert load_checkpoint(runs / "early-2" / "checkpoints" / "last.pt")["step"] == 20


def best_is_consistent(run: Path) -> None:
    """Whenever last.pt exists, best.pt holds the step last.pt calls best."""
    last = run / "checkpoints" / "last.pt"
    if last.is_file():
        best = run / "checkpoints" / "best.pt"
        assert best.is_file(), "last.pt exists without best.pt"
        assert load_checkpoint(best)["step"] == load_checkpoint(last)["best_step"]


def test_sigkill_around_the_best_checkpoint_write_keeps_best_pt_consistent(env) -> None:
    runner: Runner = env["runner"]
    run = env["runs"] / "best"
    argv = ["train", str(env["cfg"]), "name=best"]
    # killed inside the first best.pt write, then inside the first last.pt write (best.pt done)
    kill_in_save(runner, argv, env["runs"] / "best.marker", "replace", 1, name="best.pt")
    best_is_consistent(run)
    assert not (run / "checkpoints" / "best.pt").exists()
    kill_in_save(runner, ["train", str(env["cfg"]), "name=best2"], env["runs"] / "best2.marker",
                 "replace", 1, name="last.pt")
    run2 = env["runs"] / "best2"
    assert load_checkpoint(run2 / "checkpoints" / "best.pt")["step"] == EVAL_EVERY
    best_is_consistent(run2)
    # killed inside a later last.pt write: the previous pair stays consistent and resumable
    kill_in_save(runner, ["train", str(env["cfg"]), "name=best4"], env["runs"] / "best4.marker",
                 "fsync", 3, name="last.pt")
    run4 = env["runs"] / "best4"
    best_is_consistent(run4)
    assert runner.run(["train", "--resume", str(run4)]) == 0, runner.output()
    assert_same_as_reference(run4, env["reference"])
    best_is_consistent(run4)
    summary = json.loads((run4 / "summary.json").read_text())
    assert load_checkpoint(run4 / "checkpoints" / "best.pt")["step"] == summary["best_step"]
