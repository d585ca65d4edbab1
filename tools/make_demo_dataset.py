#!/usr/bin/env python
"""Cut the bundled demo dataset (``src/aerossl/data/demo/ucmerced_mini``) out of UC Merced.

A seeded choice of ``--per-class`` images from every class, resized to ``--size`` pixels with
aerossl's own reader (Pillow antialiased bicubic) and saved as JPEG. Deterministic: running it
again with the same arguments and source gives the same files.

    python tools/make_demo_dataset.py                # source ../shared/data/ucmerced
    python tools/make_demo_dataset.py --source /data/UCMerced_LandUse/Images --overwrite
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "src"))

from aerossl.data import read_image, scan_folder  # noqa: E402

DEFAULT_SOURCE = PROJECT_ROOT.parent / "shared" / "data" / "ucmerced"
DEFAULT_OUTPUT = PROJECT_ROOT / "src" / "aerossl" / "data" / "demo" / "ucmerced_mini"

README = """\
# ucmerced_mini: demo subset of UC Merced Land Use

{num_classes} land-use classes x {per_class} images = {total} aerial images, {size}x{size} RGB
JPEG (quality {quality}). Small enough to ship with aerossl for demos, smoke tests and
tutorials; far too small to measure accuracy on - use the full dataset for that.

## Source

UC Merced Land Use dataset: 21 classes x 100 images, 256x256 pixels, 1 foot (0.3 m) per
pixel, cut from USGS National Map Urban Area Imagery (public domain, U.S. Geological Survey).
http://weegee.vision.ucmerced.edu/datasets/landuse.html

Cite: Yi Yang and Shawn Newsam, "Bag-Of-Visual-Words and Spatial Extensions for Land-Use
Classification", ACM SIGSPATIAL International Conference on Advances in Geographic
Information Systems (ACM GIS), 2010.

## How it was made

    python tools/make_demo_dataset.py --per-class {per_class} --size {size} \\
        --quality {quality} --seed {seed}

Source files: {source_files} ({source_exts}) in the class folders of a UC Merced copy.
For each class (sorted), {per_class} images are chosen without replacement with
`numpy.random.default_rng({seed})` from the sorted file list, decoded and resized to
{size}x{size} with `aerossl.data.read_image` (Pillow antialiased bicubic; originals that
are not 256x256 - 44 in the full set - are stretched to square) and saved as
`<class>/<original stem>.jpg`.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help="UC Merced folder, one sub-folder per class (default: %(default)s)",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--per-class", type=int, default=40, help="images per class")
    parser.add_argument("--size", type=int, default=64, help="output side in pixels")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image choice")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output folder if it exists"
    )
    args = parser.parse_args(argv)

    dataset = scan_folder(args.source)
    out: Path = args.output
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            parser.error(f"{out} exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    source_exts = ", ".join(sorted({Path(f).suffix.lower() for f in dataset.files}))
    rng = np.random.default_rng(args.seed)
    total = 0
    for c, name in enumerate(dataset.classes):
        members = np.flatnonzero(dataset.labels == c)
        if len(members) < args.per_class:
            parser.error(f"class '{name}' has {len(members)} images, fewer than {args.per_class}")
        chosen = np.sort(rng.choice(members, size=args.per_class, replace=False))
        (out / name).mkdir()
        for i in chosen:
            rel = Path(dataset.files[i])
            chw = read_image(dataset.root / rel, args.size)
            img = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)), mode="RGB")
            img.save(out / name / f"{rel.stem}.jpg", format="JPEG", quality=args.quality)
            total += 1
    (out / "README.md").write_text(
        README.format(
            num_classes=len(dataset.classes),
            per_class=args.per_class,
            total=total,
            size=args.size,
            quality=args.quality,
            seed=args.seed,
            source_files=len(dataset.files),
            source_exts=source_exts,
        ),
        encoding="utf-8",
    )
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {total} images of {len(dataset.classes)} classes to {out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
