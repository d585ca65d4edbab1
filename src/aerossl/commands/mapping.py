"""``aerossl map RUN_DIR SCENE``: a tile map of a large GeoTIFF, JPEG or PNG."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from aerossl import api
from aerossl.commands.common import add_run_options, add_tta_option


def _band(text: str) -> str | int:
    return int(text) if text.lstrip("-").isdigit() else text


def _map(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}")
        bands = None if args.bands is None else [_band(b) for b in args.bands.split(",")]
        res = api.map_scene(args.run_dir, args.scene, args.out, tile_size=args.tile_size,
                            stride=args.stride, batch_size=args.batch_size,
                            max_nodata=args.max_nodata, checkpoint=args.checkpoint,
                            device=args.device, tile_m=args.tile_m, stride_m=args.stride_m,
                            bands=bands, stretch=args.stretch, tta=args.tta)
    print(f"mapped {res.num_tiles} tiles ({res.rows} x {res.cols}; {res.plan}): "
          f"{res.num_classified} classified, {res.num_skipped} skipped as no data, "
          f"{res.seconds:.1f} s ({res.tiles_per_second:.1f} tiles/s)")
    print(f"  values: {res.scaling}")
    for key, path in res.files.items():
        print(f"  {key}: {path}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("map", help="classify a large GeoTIFF/JPEG/PNG into a tile map")
    p.add_argument("run_dir", help="run folder (config.yaml + checkpoints/)")
    p.add_argument("scene", help="large GeoTIFF (any compression; RGB or the run's bands), "
                   "JPEG or PNG")
    p.add_argument("--out", "-o", default=None, help="output folder (default: SCENE_map)")
    p.add_argument("--tile-size", type=int, default=None,
                   help="tile size in scene pixels (default: the ground of a training image "
                   "when both ground resolutions are known, else the images' native size)")
    p.add_argument("--stride", type=int, default=None, help="tile step in px (default: tile)")
    p.add_argument("--tile-m", type=float, default=None, help="tile size in metres")
    p.add_argument("--stride-m", type=float, default=None, help="tile step in metres")
    p.add_argument("--bands", default=None,
                   help="the scene's bands for the run's, comma-separated 0-based indices or "
                   "band descriptions in the run's order (e.g. 3,2,1 or B04,B03,B02)")
    p.add_argument("--stretch", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="percentiles that scale a 16-bit/float scene to 8 bits for a run of "
                   "8-bit images (default 2 98)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-nodata", type=float, default=0.5,
                   help="skip tiles with more than this share of no-data pixels")
    add_run_options(p)
    add_tta_option(p)
    p.set_defaults(func=_map)
