"""``aerossl sweep CONFIG --labels ... --methods ... --seeds ...``: the label-budget sweep."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl import api
from aerossl.errors import ConfigError
from aerossl.pipelines.sweep import DEFAULT_LABELS


def _split_overrides(values: list[str], overrides: list[str]) -> list[str]:
    """Items of a list option that are ``key=value`` overrides (after the list) go to
    ``overrides``."""
    kept = []
    for v in values:
        (overrides if "=" in v else kept).append(v)
    return kept


def _sweep(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    labels = _split_overrides(args.labels, overrides)
    methods = _split_overrides(args.methods, overrides)
    seeds_text = _split_overrides(args.seeds, overrides)
    try:
        seeds = [int(s) for s in seeds_text]
    except ValueError:
        raise ConfigError(f"--seeds: integers expected, got {seeds_text}") from None
    result = api.sweep(args.config, labels, methods, seeds, overrides, args.name,
                       args.output_dir, plots=not args.no_plots, train=not args.report)
    print(result.files["markdown"].read_text(), end="")
    for key, path in result.files.items():
        print(f"{key}: {path}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("sweep", help="label-budget sweep: methods x labels x seeds, "
                       "table and plot (resumes after a stop)")
    p.add_argument("config", help="YAML config or shipped config name")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides of every cell")
    p.add_argument("--labels", nargs="+", default=list(DEFAULT_LABELS),
                   help="label budgets: labels per class (4), percent of each class's train "
                   "part (10%%) or all (default: %(default)s)")
    p.add_argument("--methods", nargs="+", default=["supervised", "fixmatch"],
                   help="algorithms (default: %(default)s)")
    p.add_argument("--seeds", nargs="+", default=["0", "1"], help="seeds (default: 0 1)")
    p.add_argument("--name", default="sweep", help="sweep folder under the output folder")
    p.add_argument("--output-dir", default=None, help="parent folder (default: the config's)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--report", action="store_true",
                   help="train nothing: tables and plots of the grid's finished cells")
    p.set_defaults(func=_sweep)
