"""The README's pictures of ``aerossl map`` and ``aerossl suggest-labels``.

A UC Merced run (trained on the native 256 px images) maps a mosaic of its own test images laid
out in blocks of one class (a toy land-use scene, georeferenced in UTM 11N at 0.3 m), and
suggests the next images to label:

    PYTHONPATH=src python tools/make_readme_pictures.py --run RUN_DIR \
        --data /work/shared/data/ucmerced --out docs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

import aerossl

BLOCKS = [  # a 4 x 6 layout of 2 x 2 blocks of one class each
    ["forest", "forest", "river", "agricultural", "agricultural", "golfcourse"],
    ["denseresidential", "river", "river", "agricultural", "freeway", "golfcourse"],
    ["mediumresidential", "mediumresidential", "freeway", "freeway", "parkinglot", "buildings"],
    ["sparseresidential", "chaparral", "chaparral", "runway", "airplane", "storagetanks"],
]


def mosaic(data: Path, run: Path, tile: int = 256) -> np.ndarray:
    """Test images of the run, 2 x 2 per block, placed as :data:`BLOCKS` says."""
    test = [n for n in (run / "split" / "test.txt").read_text().splitlines()
            if n and not n.startswith("#")]
    by_class: dict[str, list[str]] = {}
    for name in test:
        by_class.setdefault(name.split("/")[0], []).append(name)
    rows, cols = 2 * len(BLOCKS), 2 * len(BLOCKS[0])
    scene = np.zeros((rows * tile, cols * tile, 3), dtype=np.uint8)
    used: dict[str, int] = {}
    for br, line in enumerate(BLOCKS):
        for bc, cls in enumerate(line):
            for dr in range(2):
                for dc in range(2):
                    k = used.get(cls, 0)
                    used[cls] = k + 1
                    img = Image.open(data / by_class[cls][k]).convert("RGB").resize((tile, tile))
                    r, c = 2 * br + dr, 2 * bc + dc
                    scene[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = np.asarray(img)
    return scene


def small(src: Path, dst: Path) -> None:
    """``src`` as a 256-colour PNG (a few hundred KB at most in the repository)."""
    with Image.open(src) as img:
        img.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(dst, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a UC Merced run folder")
    p.add_argument("--data", required=True, help="UC Merced folder of class folders")
    p.add_argument("--out", default="docs")
    args = p.parse_args()
    out, run = Path(args.out), Path(args.run)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / "merced_mosaic.tif"
        keys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32611]
        tifffile.imwrite(scene, mosaic(Path(args.data), run), photometric="rgb",
                         tile=(256, 256), compression="zlib",
                         extratags=[(33550, "d", 3, (0.3, 0.3, 0.0), False),
                                    (33922, "d", 6, (0, 0, 0, 710000.0, 4130000.0, 0), False),
                                    (34735, "H", len(keys), keys, False)])
        res = aerossl.map_scene(run, scene, Path(tmp) / "map", progress=False)
        small(res.files["preview"], out / "map_preview.png")
        sug = aerossl.suggest_labels(run, 14, Path(tmp) / "suggest")
        small(sug.files["sheet"], out / "suggestions.png")
    print(f"wrote {out / 'map_preview.png'} ({res.tile_size} px tiles) and "
          f"{out / 'suggestions.png'}")


if __name__ == "__main__":
    main()
