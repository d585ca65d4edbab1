"""``aerossl suggest-labels RUN_DIR --budget N`` (and ``--accept CSV``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aerossl import api
from aerossl.commands.common import add_run_options
from aerossl.errors import AerosslError


def _suggest(args: argparse.Namespace) -> int:
    test = Path(args.run_dir) / "split" / "test.txt"
    if args.accept:
        path = api.accept_labels(args.run_dir, args.accept, args.out)
        print(f"split file: {path}")
    else:
        if args.budget is None:
            raise AerosslError("give --budget N (or --accept CSV)")
        res = api.suggest_labels(args.run_dir, args.budget, args.out, views=args.views,
                                 diversity=args.diversity, checkpoint=args.checkpoint,
                                 device=args.device)
        print(f"{len(res.names)} of {res.pool_size} unlabelled images suggested "
              f"({res.seconds:.1f} s); predicted classes: "
              f"{len(set(res.predicted))} different")
        for key, path in res.files.items():
            print(f"  {key}: {path}")
        path = res.files["split"]
    print(f"train on them: aerossl train CONFIG data.labeled_names_file={path} "
          f"data.test_names_file={test}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("suggest-labels", help="rank unlabelled images to label next")
    p.add_argument("run_dir", help="run folder (config.yaml, checkpoints/, split/)")
    p.add_argument("--budget", type=int, default=None, help="images to suggest")
    p.add_argument("--out", "-o", default=None,
                   help="output folder (default RUN_DIR/suggestions); with --accept the split "
                   "file to write")
    p.add_argument("--views", type=int, default=8, help="weak views averaged per image")
    p.add_argument("--diversity", type=float, default=0.5,
                   help="weight of the similarity penalty (0: uncertainty only)")
    p.add_argument("--accept", metavar="CSV", default=None,
                   help="write labeled.txt from a suggestions.csv whose label column is filled")
    add_run_options(p)
    p.set_defaults(func=_suggest)
