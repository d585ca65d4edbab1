"""``aerossl evaluate RUN_DIR`` (and ``--old-task SOURCE_RUN`` after a transfer run)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aerossl import api
from aerossl.commands.common import add_run_options, add_tta_option


def _evaluate(args: argparse.Namespace) -> int:
    if args.old_task:
        acc = api.evaluate_old_task(args.run_dir, args.old_task, args.checkpoint,
                                    "cpu" if args.device == "auto" else args.device)
        print(f"{args.run_dir} ({args.checkpoint}.pt): old-task accuracy {acc:.4f} on the test "
              f"split of {args.old_task}")
        return 0
    res = api.evaluate(args.run_dir, args.checkpoint, args.device, args.tta)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        scores = (f"macro mAP {res['map_macro']:.4f}, micro mAP {res['map_micro']:.4f}, "
                  f"macro F1 {res['f1_macro']:.4f}, micro F1 {res['f1_micro']:.4f}, exact match "
                  if res.get("task") == "multilabel" else "")
        tta = "" if args.tta == "none" else f", tta {args.tta}"
        print(f"{res['run_dir']} ({args.checkpoint}.pt, step {res['step']}{tta}): test {scores}"
              f"accuracy {res['accuracy']:.4f} on {res['num_test']} images, loss "
              f"{res['loss']:.4f}")
    return 0


def add_parsers(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="re-evaluate a run's saved model on its test split")
    e.add_argument("run_dir")
    add_run_options(e)
    add_tta_option(e)
    e.add_argument("--json", action="store_true", help="print per-class results as JSON")
    e.add_argument("--old-task", metavar="SOURCE_RUN", default=None,
                   help="transfer runs (lwf, fine-tuning): accuracy of the old task on the test "
                   "split of the run it transferred from")
    e.set_defaults(func=_evaluate)
