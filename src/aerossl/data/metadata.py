"""Spatiotemporal metadata per image: latitude, longitude and acquisition date, and its encoding.

Sources (``data.metadata``):

- ``csv``: a file with the header ``path,lat,lon,date``; ``path`` is relative to the dataset
  root as in split files, ``lat``/``lon`` are WGS84 degrees and ``date`` is ISO
  (``2017-06-13`` or ``2017-06-13 10:10:32``).
- ``bigearthnet``: each patch folder's ``<patch>_labels_metadata.json`` (its ``coordinates``
  box in its ``projection``, and ``acquisition_date``).
- ``geotiff``: the image centre from the GeoTIFF georeferencing, and the date from the TIFF
  ``DateTime`` tag (306) when it is set.

Encodings (``data.metadata_encoding``) turn ``(lat, lon, day of year)`` into a float vector:

- ``simple`` (4 values): ``[lat/90, lon/180, sin(2 pi d/365.25), cos(2 pi d/365.25)]``;
- ``multiscale`` (20 values): ``sin``/``cos`` of ``2^s lon`` and ``2^s lat`` (radians) for
  ``s = 0..3`` (16), and of ``k 2 pi d/365.25`` for ``k = 1, 2`` (4).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from aerossl.data.bigearthnet import patch_location
from aerossl.data.location import Location, check_location, parse_date
from aerossl.data.raster import geotiff_location
from aerossl.errors import DataError

logger = logging.getLogger("aerossl")

Encoding = Literal["simple", "multiscale"]
MissingPolicy = Literal["error", "fill"]

CSV_COLUMNS = ("path", "lat", "lon", "date")
MULTISCALE_SCALES = 4  # spatial frequencies 2^0 .. 2^3
YEAR_DAYS = 365.25


def _number(text: str, field: str, where: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: field '{field}' is not a number: {text!r}") from None


def read_metadata_csv(
    path: str | Path, files: list[str], missing: MissingPolicy = "error"
) -> list[Location | None]:
    """Locations of ``files`` (paths relative to the dataset root) from a ``path,lat,lon,date``
    CSV, in ``files`` order.

    A row naming no image of the dataset, or an image without a row, is a :class:`DataError`
    with ``missing="error"``; with ``"fill"`` the row is ignored (with a warning) and the image
    gets ``None`` (see :func:`encode_metadata`). A repeated path is always an error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read metadata file ({exc}); check data.metadata_file"
                        ) from exc
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    absent = [c for c in CSV_COLUMNS if c not in header]
    if absent:
        raise DataError(f"{path}:1: metadata CSV lacks column(s) {', '.join(absent)}; the header "
                        f"must name {','.join(CSV_COLUMNS)}")
    col = {c: header.index(c) for c in CSV_COLUMNS}
    index = {f: i for i, f in enumerate(files)}
    out: list[Location | None] = [None] * len(files)
    seen: dict[int, int] = {}
    unknown: list[str] = []
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not v.strip() for v in row):
            continue
        where = f"{path}:{lineno}"
        if len(row) < len(header):
            raise DataError(f"{where}: expected {len(header)} fields, got {len(row)}")
        name = row[col["path"]].strip().replace("\\", "/")
        rel = "/".join(p for p in PurePosixPath(name).parts if p != ".")
        i = index.get(rel)
        if i is None:
            if missing == "error":
                raise DataError(f"{where}: '{name}' is not an image of the dataset; fix the path "
                                "(relative to the dataset root) or remove the row, or set "
                                "data.missing_metadata=fill to ignore such rows")
            unknown.append(name)
            continue
        if i in seen:
            raise DataError(f"{where}: '{name}' already has metadata on line {seen[i]}")
        seen[i] = lineno
        lat = _number(row[col["lat"]], "lat", where)
        lon = _number(row[col["lon"]], "lon", where)
        lat, lon = check_location(lat, lon, f"{where}: '{name}'")
        out[i] = Location(lat, lon, parse_date(row[col["date"]], f"{where}: field 'date'"))
    if unknown:
        logger.warning("%s: ignored %d rows for images not in the dataset (first: %s)",
                       path, len(unknown), unknown[0])
    _check_complete(out, files, str(path), missing)
    return out


def _check_complete(
    locations: list[Location | None], files: list[str], source: str, missing: MissingPolicy
) -> None:
    absent = [files[i] for i, loc in enumerate(locations) if loc is None]
    if not absent:
        return
    if missing == "error":
        raise DataError(f"{source}: no metadata for {len(absent)} of {len(files)} images "
                        f"(first: '{absent[0]}'); add them, or set data.missing_metadata=fill "
                        "to give them the average encoding")
    logger.warning("%s: no metadata for %d of %d images (first: %s); they get the average "
                   "encoding", source, len(absent), len(files), absent[0])


def resolve_metadata_file(root: Path, path: str | Path) -> Path:
    """An absolute metadata file path: as given when it exists (absolute or relative to the
    working directory), else relative to the dataset root."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists():
        p = Path(root) / p
    return p.resolve()


def collect_metadata(
    root: Path, files: list[str], source: str, missing: MissingPolicy = "error",
    csv_path: str | Path | None = None,
) -> list[Location | None]:
    """Locations of ``files`` from ``source`` (``csv``, ``bigearthnet`` or ``geotiff``)."""
    if source == "csv":
        if csv_path is None:
            raise DataError("data.metadata=csv needs data.metadata_file (a path,lat,lon,date CSV)")
        return read_metadata_csv(resolve_metadata_file(root, csv_path), files, missing)
    if source not in ("bigearthnet", "geotiff"):
        raise DataError(f"unknown metadata source {source!r}: use csv, bigearthnet or geotiff")
    read_one = patch_location if source == "bigearthnet" else geotiff_location
    out: list[Location | None] = []
    for rel in files:
        try:
            loc = read_one(root / rel)
        except DataError:
            if missing == "error":
                raise
            loc = None
        if loc is not None and loc.date is None and missing == "error":
            raise DataError(f"{root / rel}: no acquisition date; set data.missing_metadata=fill "
                            "to use the average date encoding")
        out.append(loc)
    _check_complete(out, files, str(root), missing)
    return out


def encoding_dim(encoding: Encoding) -> int:
    """Width of the encoded vector."""
    return 4 if encoding == "simple" else 4 * MULTISCALE_SCALES + 4


def encode_location(loc: Location, encoding: Encoding = "simple") -> np.ndarray:
    """One location as a float32 vector (the date part is NaN when the date is unknown)."""
    doy = float("nan") if loc.date is None else loc.date.timetuple().tm_yday - 1
    angle = 2 * math.pi * doy / YEAR_DAYS
    if encoding == "simple":
        vec = [loc.lat / 90.0, loc.lon / 180.0, math.sin(angle), math.cos(angle)]
    elif encoding == "multiscale":
        lat, lon = math.radians(loc.lat), math.radians(loc.lon)
        vec = []
        for s in range(MULTISCALE_SCALES):
            f = 2.0**s
            vec += [math.sin(f * lon), math.cos(f * lon), math.sin(f * lat), math.cos(f * lat)]
        vec += [math.sin(angle), math.cos(angle), math.sin(2 * angle), math.cos(2 * angle)]
    else:
        raise DataError(f"unknown metadata encoding {encoding!r}: use simple or multiscale")
    return np.asarray(vec, dtype=np.float32)


def encode_metadata(locations: list[Location | None], encoding: Encoding = "simple") -> np.ndarray:
    """``(N, D)`` float32 encodings; unknown locations or dates get the mean of the known
    values of each column (an uninformative input)."""
    dim = encoding_dim(encoding)
    out = np.full((len(locations), dim), np.nan, dtype=np.float32)
    for i, loc in enumerate(locations):
        if loc is not None:
            out[i] = encode_location(loc, encoding)
    known = ~np.isnan(out)
    for j in range(dim):
        column = out[:, j]
        fill = float(column[known[:, j]].mean()) if known[:, j].any() else 0.0
        column[~known[:, j]] = fill
    return out
