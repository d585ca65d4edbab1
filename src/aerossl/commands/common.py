"""Options and printing shared by several commands."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl.runs.loader import CHECKPOINTS


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that loads a trained run: which checkpoint, which device."""
    parser.add_argument("--checkpoint", default="last", choices=CHECKPOINTS)
    parser.add_argument("--device", default="auto")


def print_run(result: Any) -> int:
    """One finished run: its final and best test accuracy and its folder."""
    print(f"test accuracy {result.final_acc:.4f} (best {result.best_acc:.4f} at step "
          f"{result.best_step}) after {result.steps} steps, {result.minutes:.1f} min")
    print(f"run folder: {result.run_dir}")
    return 0
