"""Options and printing shared by several commands."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl.models.tta import TTA_MODES
from aerossl.runs.loader import CHECKPOINTS


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that loads a trained run: which checkpoint, which device."""
    parser.add_argument("--checkpoint", default="last", choices=CHECKPOINTS)
    parser.add_argument("--device", default="auto")


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    """``--tta``: average the network's answers over flipped or turned copies of each image."""
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help="test-time augmentation: 'flips' averages over the 4 flips of "
                        "each image, 'dihedral' over its 8 flips and quarter turns (4x or 8x "
                        "the inference time; default none)")


def print_run(result: Any) -> int:
    """One finished run: its final and best test accuracy and its folder."""
    print(f"test accuracy {result.final_acc:.4f} (best {result.best_acc:.4f} at step "
          f"{result.best_step}) after {result.steps} steps, {result.minutes:.1f} min")
    print(f"run folder: {result.run_dir}")
    return 0
