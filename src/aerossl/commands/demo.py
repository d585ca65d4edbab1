"""``aerossl demo``: three runs on the embedded demo dataset, same labels."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl import api


def _demo(args: argparse.Namespace) -> int:
    results = api.demo(args.steps_scale, args.output_dir, args.device)
    print("\naerossl demo: UC Merced mini (21 classes, 4 labels per class), same labels")
    for name, r in results.items():
        print(f"  {name:<26} test accuracy {r.final_acc:6.1%}   ({r.steps} steps, "
              f"{r.minutes + r.bank_minutes:.1f} min)   report: {r.report}")
    return 0


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("demo", help="supervised from scratch, supervised on the pretrained "
                       "network and FixMatch on it, on the embedded demo dataset")
    d.add_argument("--steps-scale", type=float, default=1.0, help="multiply the demo budget")
    d.add_argument("--output-dir", default="runs")
    d.add_argument("--device", default="auto")
    d.set_defaults(func=_demo)
