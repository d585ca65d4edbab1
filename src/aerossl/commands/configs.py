"""``aerossl validate CONFIG`` (print it resolved), ``aerossl list`` (what is registered) and
``aerossl report RUN_DIR`` (rewrite a run's report)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from aerossl import api


def _validate(args: argparse.Namespace) -> int:
    cfg = api.validate(args.config, args.overrides)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    print(f"# {args.config}: valid", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    for kind, names in api.inventory().items():
        print(f"{kind + ':':<15}", ", ".join(names))
    return 0


def _report(args: argparse.Namespace) -> int:
    print(api.report(args.run_dir))
    return 0


def add_parsers(sub: Any) -> None:
    v = sub.add_parser("validate", help="check a config and print it resolved")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.set_defaults(func=_validate)

    li = sub.add_parser("list", help="list algorithms, models, augmentations, data formats "
                                     "and configs")
    li.set_defaults(func=_list)

    r = sub.add_parser("report", help="(re)write a run's HTML and Markdown report")
    r.add_argument("run_dir")
    r.set_defaults(func=_report)
