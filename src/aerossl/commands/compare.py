"""``aerossl compare RUN_DIR... [--plot FILE]``."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl import api


def _compare(args: argparse.Namespace) -> int:
    table, png = api.compare(args.run_dirs, args.plot)
    print(table)
    if png:
        print(f"plot: {png}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare runs: table of accuracies, plot")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--plot", default=None, metavar="FILE", help="write accuracy curves (PNG)")
    p.set_defaults(func=_compare)
