"""Where a training step's time goes: batch assembly and augmentation, model, optimiser.

Builds a run from a config (as ``aerossl train`` would), times ``--steps`` training steps after
``--warmup`` steps, and reports per-step seconds of each phase and the share of wall time spent
outside the model's forward and backward passes. Appends a row to a Markdown table.

    python benchmarks/step_profile.py ucmerced_fixmatch data.root=../shared/data/ucmerced
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import torch

from aerossl.algorithms import StepContext
from aerossl.api import find_config
from aerossl.config import load_config
from aerossl.engine.trainer import Trainer

HEADER = (
    "| date | config | overrides | threads | device | images/step | data s | model s | "
    "optim s | wall s/step | outside model |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def profile(config: str, overrides: list[str], steps: int, warmup: int) -> dict[str, float]:
    """Seconds per step of each phase, measured on a throw-away run folder."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(find_config(config), [*overrides, f"output_dir={tmp}", "report=[]",
                                                "train.tensorboard=false"])
        trainer = Trainer(cfg)
        for i in range(warmup):
            trainer._train_step(StepContext(i, cfg.train.steps))
        totals = {"time/data": 0.0, "time/model": 0.0, "time/optim": 0.0}
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        for i in range(steps):
            _, times = trainer._train_step(StepContext(warmup + i, cfg.train.steps))
            for k, v in times.items():
                totals[k] += v
        sync()
        wall = (time.perf_counter() - start) / steps
        views = trainer.views
        n = cfg.train.batch_size * len(views.labeled)
        n += cfg.train.batch_size * cfg.train.mu * len(views.unlabeled)
        out = {k.split("/")[1]: v / steps for k, v in totals.items()}
        out.update(wall=wall, images=n, outside=1 - out["model"] / wall,
                   device=str(trainer.device))
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/step_profile.md")
    args = p.parse_args()
    r = profile(args.config, args.overrides, args.steps, args.warmup)
    row = (f"| {dt.date.today().isoformat()} | {args.config} | {' '.join(args.overrides)} | "
           f"{torch.get_num_threads()} | {r['device']} | {r['images']} | {r['data']:.4f} | "
           f"{r['model']:.4f} | {r['optim']:.4f} | {r['wall']:.4f} | {100 * r['outside']:.1f}% |\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        out.write_text(f"# Training step profile\n\nmachine: {os.cpu_count()} cores; "
                       "GPU timings synchronise only around the timed loop, so per-phase "
                       "numbers are exact on CPU only.\n\n" + HEADER)
    with out.open("a") as f:
        f.write(row)
    print(HEADER + row, end="")


if __name__ == "__main__":
    main()
