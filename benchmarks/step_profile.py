"""Where a training step's time goes: batch assembly and augmentation, model, optimiser.

Builds a run from a config (as ``aerossl train`` would), times ``--steps`` training steps after
``--warmup`` steps, and reports per-step seconds of each phase and the share of wall time spent
outside the model's forward and backward passes. Appends a row to a Markdown table.

``--roofline`` adds what the step achieves against the hardware: the step's floating-point
operations (forward and backward, counted by ``torch.utils.flop_counter`` on one step), the
GFLOP/s that makes at the measured wall time, and the GFLOP/s of a plain fp32 matrix multiply
(2048 x 2048, best of 10) at the same thread count on the same cores: the roofline.

    python benchmarks/step_profile.py ucmerced_fixmatch data.root=../shared/data/ucmerced
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from aerossl.algorithms import StepContext
from aerossl.api import find_config
from aerossl.engine.trainer import Trainer
from aerossl.validate import load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import cpu_name

HEADER = (
    "| date | config | overrides | threads | device | images/step | data s | model s | "
    "optim s | wall s/step | outside model |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
)


HEADER_ROOFLINE = (
    "| date | config | overrides | threads | images/step | data s | model s | optim s | "
    "wall s/step | outside model | GFLOP/step | GFLOP/s | matmul GFLOP/s | of roofline |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 matrix-multiply GFLOP/s at the current thread count (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                         _dilation, transposed, _output_padding, _groups, output_mask,
                         out_shape=None) -> int:
    """FLOPs of a convolution's backward: each of grad-input and grad-weight costs what the
    forward did (``2 N prod(weight) prod(output spatial)``). torch's own formula ignores
    ``groups`` and counts a depthwise convolution's backward as if it were dense."""
    spatial = x_shape[2:] if transposed else grad_out_shape[2:]
    once = 2 * grad_out_shape[0] * math.prod(w_shape) * math.prod(spatial)
    return once * (int(output_mask[0]) + int(output_mask[1]))


def step_flops(trainer: Trainer, step: int) -> float:
    """Floating-point operations of one training step (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        trainer._train_step(StepContext(step, trainer.cfg.train.steps))
    return float(counter.get_total_flops())


def profile(config: str, overrides: list[str], steps: int, warmup: int,
            roofline: bool = False) -> dict[str, float]:
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
        if roofline:
            out["gflop"] = step_flops(trainer, warmup + steps) / 1e9
            out["matmul"] = matmul_gflops()
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/step_profile.md")
    p.add_argument("--roofline", action="store_true", help="count FLOPs, measure a matmul")
    p.add_argument("--context", default="", help="what else ran meanwhile (roofline table)")
    args = p.parse_args()
    r = profile(args.config, args.overrides, args.steps, args.warmup, args.roofline)
    if args.roofline:
        write_roofline_row(args, r)
        return
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


def write_roofline_row(args: argparse.Namespace, r: dict[str, float]) -> None:
    """Append a row to the roofline table (created under its own heading)."""
    achieved = r["gflop"] / r["wall"]
    row = (f"| {dt.date.today().isoformat()} | {args.config} | {' '.join(args.overrides)} | "
           f"{torch.get_num_threads()} | {r['images']} | {r['data']:.4f} | {r['model']:.4f} | "
           f"{r['optim']:.4f} | {r['wall']:.4f} | {100 * r['outside']:.1f}% | "
           f"{r['gflop']:.1f} | {achieved:.1f} | {r['matmul']:.1f} | "
           f"{100 * achieved / r['matmul']:.0f}% |\n")
    out = Path(args.out)
    text = out.read_text() if out.exists() else "# Training step profile\n"
    if HEADER_ROOFLINE not in text:
        text += ("\n## Against the matmul roofline (CPU)\n\n"
                 "`python benchmarks/step_profile.py CONFIG OVERRIDES --roofline`: GFLOP/step "
                 "counts forward and backward (torch.utils.flop_counter: convolutions and "
                 "matrix multiplies; a convolution's backward counted with its groups);"
                 " GFLOP/s = GFLOP/step / wall s/step; matmul GFLOP/s: a "
                 "2048 x 2048 fp32 matrix multiply on the same threads. "
                 f"Machine: {os.cpu_count()} cores ({cpu_name()}, no GPU).\n\n" + HEADER_ROOFLINE)
    text += row
    if args.context:
        text += f"|  | *meanwhile: {args.context}* | | | | | | | | | | | | |\n"
    out.write_text(text)
    print(HEADER_ROOFLINE + row, end="")


if __name__ == "__main__":
    main()
