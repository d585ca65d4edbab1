"""BigEarthNet (Sentinel-2) patch folders: one GeoTIFF per band plus a JSON of labels and date.

A patch folder ``<patch>/`` holds ``<patch>_B01.tif`` ... ``<patch>_B12.tif`` (12 bands, no
B10) at 10 m (120 x 120: B02, B03, B04, B08), 20 m (60 x 60: B05, B06, B07, B8A, B11, B12)
and 60 m (20 x 20: B01, B09), and ``<patch>_labels_metadata.json`` with ``labels`` (a list of
CORINE class names), ``coordinates`` (``ulx``, ``uly``, ``lrx``, ``lry`` in ``projection``),
``projection`` (WKT) and ``acquisition_date``.

Every band is resampled straight from its own grid to ``image_size x image_size`` (bicubic,
see :func:`aerossl.data.raster.resize_band`); with ``image_size: 120`` that is the 10 m grid.
Labels are returned as lists of strings per patch, for multi-label training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aerossl.data.location import Location, parse_date
from aerossl.data.raster import read_raster, resize_band, select_bands, to_wgs84
from aerossl.errors import DataError

BIGEARTHNET_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)
"""The bands of a BigEarthNet-S2 patch, in the order they are stacked."""

JSON_SUFFIX = "_labels_metadata.json"


def band_files(folder: Path) -> dict[str, Path]:
    """``{band name: file}`` of the ``<patch>_<band>.tif`` files in a patch folder."""
    prefix = folder.name + "_"
    out = {}
    for p in folder.iterdir():
        if p.name.startswith(prefix) and p.suffix.lower() in (".tif", ".tiff"):
            out[p.stem[len(prefix):].upper()] = p
    return out


def is_patch_folder(folder: Path) -> bool:
    """True for a folder holding ``<folder>_labels_metadata.json`` or ``<folder>_B02.tif``."""
    name = folder.name
    return (folder / f"{name}{JSON_SUFFIX}").is_file() or (folder / f"{name}_B02.tif").is_file()


def patch_band_names(folder: Path) -> list[str]:
    """Band names present in a patch folder, in :data:`BIGEARTHNET_BANDS` order (others after,
    sorted)."""
    present = band_files(folder)
    known = [b for b in BIGEARTHNET_BANDS if b in present]
    return known + sorted(set(present) - set(known))


def read_patch(
    folder: str | Path, image_size: int, bands: Sequence[str | int] | None = None
) -> tuple[np.ndarray, list[str]]:
    """The selected bands of a patch as float32 ``(C, image_size, image_size)``, and their names.

    Raises :class:`DataError` naming the folder when it has no band files, a band file is not
    a single band, or a requested band does not exist.
    """
    folder = Path(folder)
    files = band_files(folder)
    if not files:
        raise DataError(f"{folder}: no band files '{folder.name}_<band>.tif' in this BigEarthNet "
                        "patch folder")
    names = patch_band_names(folder)
    chosen = [names[i] for i in select_bands(names, len(names), bands, str(folder))]
    out = np.empty((len(chosen), image_size, image_size), dtype=np.float32)
    for k, name in enumerate(chosen):
        arr, _ = read_raster(files[name])
        if arr.shape[0] != 1:
            raise DataError(f"{files[name]}: band file has {arr.shape[0]} bands, expected 1")
        out[k] = resize_band(arr[0], image_size)
    return out, chosen


def read_patch_json(folder: str | Path) -> dict[str, Any]:
    """The patch's ``<patch>_labels_metadata.json`` as a dict (DataError when unreadable)."""
    folder = Path(folder)
    path = folder / f"{folder.name}{JSON_SUFFIX}"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read patch metadata ({exc})") from exc
    except ValueError as exc:
        raise DataError(f"{path}: patch metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: patch metadata must be a JSON object")
    return meta


def patch_labels(folder: str | Path) -> list[str]:
    """The patch's class names (its JSON ``labels``)."""
    folder = Path(folder)
    labels = read_patch_json(folder).get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{folder / (folder.name + JSON_SUFFIX)}: field 'labels' must be a list "
                        f"of class names, got {labels!r}")
    return list(labels)


def patch_location(folder: str | Path) -> Location:
    """WGS84 centre of the patch's ``coordinates`` box and its ``acquisition_date``."""
    folder = Path(folder)
    where = str(folder / f"{folder.name}{JSON_SUFFIX}")
    meta = read_patch_json(folder)
    box = meta.get("coordinates")
    try:
        x = (float(box["ulx"]) + float(box["lrx"])) / 2
        y = (float(box["uly"]) + float(box["lry"])) / 2
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{where}: field 'coordinates' must hold numbers ulx, uly, lrx, lry, got "
                        f"{box!r}") from None
    projection = meta.get("projection")
    if not isinstance(projection, str) or not projection:
        raise DataError(f"{where}: field 'projection' is not a CRS (got {projection!r})")
    lat, lon = to_wgs84(x, y, projection, f"{where}: field 'coordinates'",
                        crs_where=f"{where}: field 'projection'")
    date_text = meta.get("acquisition_date")
    if not isinstance(date_text, str):
        raise DataError(f"{where}: field 'acquisition_date' is missing or not a string")
    return Location(lat, lon, parse_date(date_text, f"{where}: field 'acquisition_date'"))


@dataclass(eq=False)
class BigEarthNetPatches:
    """Patch folders under a root (relative POSIX paths, sorted) with their label lists."""

    root: Path
    patches: list[str]
    labels: list[list[str]]

    def __len__(self) -> int:
        return len(self.patches)

    @property
    def classes(self) -> list[str]:
        """Every class name that occurs, sorted."""
        return sorted({name for labels in self.labels for name in labels})


def scan_bigearthnet(root: str | Path) -> BigEarthNetPatches:
    """Find the patch folders under ``root`` (searched recursively) and read their labels."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: BigEarthNet folder does not exist")
    patches = sorted(
        j.parent.relative_to(root).as_posix()
        for j in root.rglob(f"*{JSON_SUFFIX}")
        if j.name == f"{j.parent.name}{JSON_SUFFIX}"
    )
    if not patches:
        raise DataError(f"{root}: no BigEarthNet patch folders (<patch>/<patch>{JSON_SUFFIX})")
    return BigEarthNetPatches(root, patches, [patch_labels(root / p) for p in patches])
