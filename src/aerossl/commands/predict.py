"""``aerossl predict RUN_DIR PATH...`` (CSV, GeoJSON) and ``aerossl pseudo-label RUN_DIR DIR``
(every class probability to a CSV)."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl import api
from aerossl.commands.common import add_run_options, add_tta_option


def _predict(args: argparse.Namespace) -> int:
    res = api.predict(args.run_dir, args.paths, args.output, top_k=args.top_k,
                      batch_size=args.batch_size, checkpoint=args.checkpoint,
                      geojson=args.geojson, device=args.device, tta=args.tta)
    print(f"predicted {res.num_predicted} of {res.num_images} images in {res.seconds:.1f} s "
          f"({res.images_per_second:.1f} images/s), {res.num_georeferenced} georeferenced")
    if res.unreadable:
        print(f"{len(res.unreadable)} unreadable files (no CSV row):")
        for path, reason in res.unreadable:
            print(f"  {path}: {reason}")
    print(f"predictions: {res.output_csv}")
    if res.geojson:
        print(f"geojson: {res.geojson}")
    return 0


def _pseudo_label(args: argparse.Namespace) -> int:
    path = api.pseudo_label(args.run_dir, args.data_dir, args.out, args.checkpoint, args.device,
                            tta=args.tta)
    print(f"pseudo-labels: {path}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify new images with a trained run")
    p.add_argument("run_dir", help="run folder (config.yaml + checkpoints/)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--output", "-o", default="predictions.csv", help="CSV to write")
    p.add_argument("--top-k", type=int, default=3, help="classes listed per image")
    p.add_argument("--geojson", default=None, help="also write georeferenced points here")
    p.add_argument("--batch-size", type=int, default=128)
    add_run_options(p)
    add_tta_option(p)
    p.set_defaults(func=_predict)

    pl = sub.add_parser("pseudo-label", help="class probabilities of every image to a CSV")
    pl.add_argument("run_dir")
    pl.add_argument("data_dir", help="folder of images (searched recursively)")
    pl.add_argument("--out", "-o", default="pseudo_labels.csv")
    add_run_options(pl)
    add_tta_option(pl)
    pl.set_defaults(func=_pseudo_label)
