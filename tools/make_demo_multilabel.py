#!/usr/bin/env python
"""Write the multi-label demo manifest ``src/aerossl/data/demo/ucmerced_mini_multilabel.csv``.

Every image of the bundled demo dataset keeps its UC Merced class as one label and gains the
land-cover labels its class always shows (``forest`` -> ``forest;vegetation``, ``beach`` ->
``beach;sand;water``), so scenes share labels across classes. Deterministic.

    python tools/make_demo_multilabel.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "src"))

from aerossl.data import demo_dataset_path, scan_folder  # noqa: E402

#: Land cover each UC Merced class always shows.
LAND_COVER = {
    "agricultural": ["vegetation"],
    "airplane": ["pavement"],
    "baseballdiamond": ["sports", "vegetation"],
    "beach": ["sand", "water"],
    "buildings": ["built-up"],
    "chaparral": ["vegetation"],
    "denseresidential": ["built-up"],
    "forest": ["vegetation"],
    "freeway": ["pavement"],
    "golfcourse": ["sports", "vegetation"],
    "harbor": ["water"],
    "intersection": ["pavement"],
    "mediumresidential": ["built-up", "vegetation"],
    "mobilehomepark": ["built-up"],
    "overpass": ["pavement"],
    "parkinglot": ["pavement"],
    "river": ["vegetation", "water"],
    "runway": ["pavement"],
    "sparseresidential": ["built-up", "vegetation"],
    "storagetanks": ["built-up"],
    "tenniscourt": ["pavement", "sports"],
}


def main() -> None:
    demo = demo_dataset_path()
    out = demo.parent / "ucmerced_mini_multilabel.csv"
    dataset = scan_folder(demo)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "labels"])
        for rel, label in zip(dataset.files, dataset.labels, strict=True):
            name = dataset.classes[label]
            writer.writerow([f"{demo.name}/{rel}", ";".join([name, *LAND_COVER[name]])])
    print(f"wrote {out} ({len(dataset.files)} images)")


if __name__ == "__main__":
    main()
