"""``aerossl train CONFIG [overrides]`` and ``aerossl train --resume RUN_DIR``."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl import api
from aerossl.engine import distributed
from aerossl.errors import AerosslError


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.config and "=" not in args.config:
            raise AerosslError("give either CONFIG or --resume RUN_DIR, not both")
        overrides = ([args.config] if args.config else []) + args.overrides
        result = api.resume(args.resume, overrides)
    else:
        if not args.config:
            raise AerosslError("missing CONFIG (a YAML file or a shipped config name)")
        result = api.train(args.config, args.overrides)
    if not distributed.is_main():  # under torchrun rank 0 reports
        return 0
    name = "accuracy" if result.metric == "acc" else result.metric
    print(f"test {name} {result.final_acc:.4f} (best {result.best_acc:.4f} at step "
          f"{result.best_step}) after {result.steps} steps, {result.minutes:.1f} min")
    if result.metric != "acc":
        print("  " + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    print(f"run folder: {result.run_dir}")
    if result.report:
        print(f"report: {result.report}")
    return 0


def add_parsers(sub: Any) -> None:
    t = sub.add_parser("train", help="train a run, or resume one")
    t.add_argument("config", nargs="?", help="YAML config or shipped config name")
    t.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    t.set_defaults(func=_train)
