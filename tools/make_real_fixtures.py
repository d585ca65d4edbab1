"""Cut the small real-data test fixtures under tests/data/ from ../shared/data.

* ``eurosat_cut/<Class>/<Class>_1.tif``: the top-left 16 x 16 pixels of two real EuroSAT
  Sentinel-2 tiles (all 13 bands, uint16, pixel-interleaved), with their GeoTIFF tags
  (tiepoint at pixel 0,0, pixel scale, GeoKeys, GDAL metadata) unchanged.
* ``bigearthnet_cut/<patch>/``: one real BigEarthNet-S2 patch, every band file cut to its
  top-left 240 m x 240 m (10 m bands 24 x 24, 20 m bands 12 x 12, 60 m bands 4 x 4) with its
  tags unchanged, and the patch's labels/metadata JSON as it is (its box is the whole patch).

    python tools/make_real_fixtures.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import tifffile

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"
EUROSAT_TILES = ("Forest/Forest_1.tif", "River/River_1.tif")
EUROSAT_SIZE = 16
PATCH = "S2A_MSIL2A_20170613T101031_87_48"
PATCH_METRES = 240
GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)


def cut(src: Path, dst: Path, size: int) -> None:
    """Write the top-left ``size x size`` pixels of ``src`` to ``dst`` with its geo tags."""
    with tifffile.TiffFile(src) as tif:
        page = tif.pages[0]
        data = page.asarray()
        extratags = []
        for code in GEO_TAGS:
            tag = page.tags.get(code)
            if tag is None:
                continue
            count = 0 if isinstance(tag.value, str) else tag.count
            extratags.append((code, tag.dtype, count, tag.value, True))
    data = np.ascontiguousarray(data[:size, :size])
    dst.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(dst, data, photometric="minisblack", planarconfig="contig",
                     extratags=extratags, metadata=None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path,
                   default=Path(__file__).resolve().parents[3] / "shared" / "data")
    args = p.parse_args()
    for rel in EUROSAT_TILES:
        cut(args.shared / "eurosat_ms" / rel, OUT / "eurosat_cut" / rel, EUROSAT_SIZE)
    src = args.shared / "bigearthnet_example" / PATCH
    dst = OUT / "bigearthnet_cut" / PATCH
    for f in sorted(src.glob("*.tif")):
        with tifffile.TiffFile(f) as tif:
            metres = float(tif.pages[0].tags[33550].value[0])
        cut(f, dst / f.name, round(PATCH_METRES / metres))
    shutil.copyfile(src / f"{PATCH}_labels_metadata.json", dst / f"{PATCH}_labels_metadata.json")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote fixtures under {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
