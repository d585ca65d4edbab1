"""Multi-band (GeoTIFF) rasters: bands, band names, resampling and georeferenced centre.

Read with tifffile (no GDAL). Band names come from the GDAL band descriptions
(``GDAL_METADATA`` tag 42112, ``<Item name="DESCRIPTION" sample="i" role="description">``)
where present; a 13-band file without descriptions gets the Sentinel-2 names in EuroSAT order
(:data:`SENTINEL2_BANDS`); 3-band 8-bit images are ``R, G, B``; other files have no names and
their bands are selected by index.

The centre of a GeoTIFF in WGS84 comes from ``ModelTransformationTag`` (or, without it,
``ModelTiepointTag`` + ``ModelPixelScaleTag``) and the EPSG code in the GeoKey directory
(``ProjectedCSTypeGeoKey`` 3072 or ``GeographicTypeGeoKey`` 2048), transformed with pyproj.
This is the one place that reads them: training metadata, BigEarthNet patches and
``aerossl predict`` all use :func:`georeference` and :func:`to_wgs84`.
"""

from __future__ import annotations

import datetime as dt
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from aerossl.data.metadata import Location, check_location, parse_date
from aerossl.errors import DataError

SENTINEL2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)
"""Default names of 13-band rasters: Sentinel-2 L1C in EuroSAT order."""

RGB_BANDS: tuple[str, ...] = ("R", "G", "B")

_TAG_PIXEL_SCALE = 33550
_TAG_TIEPOINT = 33922
_TAG_TRANSFORMATION = 34264
_TAG_GEOKEYS = 34735
_TAG_GDAL_METADATA = 42112
_TAG_DATETIME = 306
_KEY_RASTER_TYPE = 1025  # 1: PixelIsArea, 2: PixelIsPoint
_KEY_GEOGRAPHIC = 2048
_KEY_PROJECTED = 3072
_USER_DEFINED = 32767


def read_raster(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """All bands of a TIFF as a ``(C, H, W)`` array in the file's dtype, and their names
    (descriptions, or the defaults above, or ``None``)."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            arr = series.asarray()
            page = tif.pages[0]
            descriptions = _band_descriptions(page)
    except DataError:
        raise
    except Exception as exc:  # tifffile raises many types on corrupt data
        raise DataError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and axes[-1] in "SC" and axes[-3:-1] == "YX":
        arr = np.moveaxis(arr, -1, 0)  # contiguous (H, W, C) -> (C, H, W)
    elif arr.ndim != 3:
        raise DataError(f"{path}: TIFF of shape {arr.shape} (axes {axes}) is not one image of "
                        "bands (expected H x W, C x H x W or H x W x C)")
    names: list[str] | None = None
    if descriptions and len(descriptions) == arr.shape[0] and all(descriptions):
        names = descriptions
    elif arr.shape[0] == len(SENTINEL2_BANDS):
        names = list(SENTINEL2_BANDS)
    elif arr.shape[0] == 3 and arr.dtype == np.uint8:
        names = list(RGB_BANDS)
    return np.ascontiguousarray(arr), names


def _band_descriptions(page: tifffile.TiffPage) -> list[str] | None:
    tag = page.tags.get(_TAG_GDAL_METADATA)
    if tag is None:
        return None
    try:
        root = ET.fromstring(str(tag.value))
    except ET.ParseError:
        return None
    found: dict[int, str] = {}
    for item in root.iter("Item"):
        if item.get("role") == "description" and item.get("sample") is not None:
            found[int(item.get("sample", "0"))] = (item.text or "").strip()
    if not found:
        return None
    return [found.get(i, "") for i in range(max(found) + 1)]


def select_bands(
    names: Sequence[str] | None, count: int, bands: Sequence[str | int] | None, where: str
) -> list[int]:
    """Indices of ``bands`` (names or 0-based indices) among ``count`` bands called ``names``;
    all bands when ``bands`` is None. An unknown name or index is a :class:`DataError`."""
    if bands is None:
        return list(range(count))
    out = []
    for band in bands:
        if isinstance(band, int) and not isinstance(band, bool):
            if not 0 <= band < count:
                raise DataError(f"{where}: data.bands: band index {band} is out of range for an "
                                f"image with {count} bands (0..{count - 1})")
            out.append(band)
            continue
        if names is None:
            raise DataError(f"{where}: data.bands: band '{band}' cannot be found: the image's "
                            f"{count} bands have no names (no GDAL band descriptions); select "
                            f"them by index 0..{count - 1}")
        lookup = {n.upper(): i for i, n in enumerate(names)}
        key = str(band).upper()
        if key not in lookup and key.startswith("B") and key[1:].isdigit() and len(key) == 2:
            key = f"B0{key[1:]}"  # B4 -> B04
        if key not in lookup:
            from aerossl.errors import suggest

            raise DataError(f"{where}: data.bands: band '{band}' does not exist"
                            f"{suggest(str(band), list(names))} (bands: {', '.join(names)})")
        out.append(lookup[key])
    return out


def resize_band(band: np.ndarray, size: int) -> np.ndarray:
    """One band resampled to ``size x size`` as float32 (Pillow bicubic in float mode,
    antialiased when shrinking); a band already that size is returned unchanged."""
    band = np.asarray(band, dtype=np.float32)
    if band.shape == (size, size):
        return band
    img = Image.fromarray(band, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def scale_to_uint8(
    bands: np.ndarray, band_min: Sequence[float], band_max: Sequence[float]
) -> np.ndarray:
    """``round(255 * clip((x - min) / (max - min), 0, 1))`` per band (``(C, H, W)``)."""
    lo = np.asarray(band_min, dtype=np.float32).reshape(-1, 1, 1)
    hi = np.asarray(band_max, dtype=np.float32).reshape(-1, 1, 1)
    span = np.maximum(hi - lo, np.float32(1e-6))
    x = (np.asarray(bands, dtype=np.float32) - lo) / span
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


# -------------------------------------------------------------------------- georeferencing


def _geokeys(page: tifffile.TiffPage) -> dict[int, int]:
    """Short (inline) values of the GeoKeyDirectoryTag: ``{key_id: value}``."""
    tag = page.tags.get(_TAG_GEOKEYS)
    if tag is None:
        return {}
    values = [int(v) for v in tag.value]
    if len(values) < 4:
        return {}
    keys = {}
    for k in range(min(values[3], (len(values) - 4) // 4)):
        key_id, location, _count, value = values[4 + 4 * k : 8 + 4 * k]
        if location == 0:  # value stored inline (SHORT)
            keys[key_id] = value
    return keys


GeoTransform = tuple[float, float, float, float, float, float]
"""GDAL-order affine ``(x0, dx, rx, y0, ry, dy)``: pixel corner ``(col, row)`` maps to
``x = x0 + col * dx + row * rx``, ``y = y0 + col * ry + row * dy`` in the raster's CRS."""


def geotransform(page: tifffile.TiffPage) -> GeoTransform | None:
    """The corner-based affine of a GeoTIFF page (``ModelTransformationTag``, else
    ``ModelTiepointTag`` + ``ModelPixelScaleTag``: the precedence :func:`georeference` explains),
    or ``None`` when it has neither. PixelIsPoint rasters (which tie pixel centres) are shifted by
    half a pixel so that the result is always PixelIsArea."""
    tie = page.tags.get(_TAG_TIEPOINT)
    scale = page.tags.get(_TAG_PIXEL_SCALE)
    matrix = page.tags.get(_TAG_TRANSFORMATION)
    tie_v = None if tie is None else [float(v) for v in tie.value]
    scale_v = None if scale is None else [float(v) for v in scale.value]
    matrix_v = None if matrix is None else [float(v) for v in matrix.value]
    gt: GeoTransform
    if matrix_v is not None and len(matrix_v) == 16:
        m = matrix_v
        gt = (m[3], m[0], m[1], m[7], m[4], m[5])
    elif tie_v is not None and scale_v is not None and len(tie_v) >= 6 and len(scale_v) >= 2:
        i, j, _, x0, y0, _ = tie_v[:6]
        gt = (x0 - i * scale_v[0], scale_v[0], 0.0, y0 + j * scale_v[1], 0.0, -scale_v[1])
    else:
        return None
    if _geokeys(page).get(_KEY_RASTER_TYPE) == 2:  # centres tied: the corner is half a pixel off
        x0, dx, rx, y0, ry, dy = gt
        gt = (x0 - 0.5 * (dx + rx), dx, rx, y0 - 0.5 * (ry + dy), ry, dy)
    return gt


def epsg_code(page: tifffile.TiffPage) -> int | None:
    """EPSG code of a GeoTIFF page's CRS (``ProjectedCSTypeGeoKey``, else
    ``GeographicTypeGeoKey``); ``None`` when absent or user-defined."""
    keys = _geokeys(page)
    code = keys.get(_KEY_PROJECTED) or keys.get(_KEY_GEOGRAPHIC)
    return None if not code or code == _USER_DEFINED else int(code)


def georeference(path: str | Path) -> tuple[float, float, int]:
    """Centre ``(x, y)`` of the raster in its CRS and that CRS's EPSG code (for a geographic
    CRS, x is the longitude and y the latitude, as GeoTIFF stores them).

    The raster-to-model mapping is ``ModelTransformationTag`` when the file has one, else
    ``ModelTiepointTag`` + ``ModelPixelScaleTag``. The GeoTIFF specification (1.0, section
    2.6.1) defines the transformation as the exact affine mapping (rotation and shear
    included), which a pixel scale cannot express, and says a file shall never carry it
    together with a pixel scale; a file that does anyway is read by its complete mapping.
    (GDAL reads such a file by the pixel scale instead.) Raises :class:`DataError` when the
    file is not a readable, georeferenced GeoTIFF with an EPSG code.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            h, w = page.shape[page.axes.index("Y")], page.shape[page.axes.index("X")]
            if len(tif.series[0].shape) == 3 and tif.series[0].axes[0] in "IQ":
                h, w = tif.series[0].shape[1:]
            code = epsg_code(page)
            gt = geotransform(page)
    except Exception as exc:  # tifffile raises many types on corrupt data
        raise DataError(f"{path}: cannot read GeoTIFF tags ({type(exc).__name__}: {exc})"
                        ) from exc
    if code is None:
        raise DataError(f"{path}: GeoTIFF has no EPSG code (ProjectedCSTypeGeoKey or "
                        "GeographicTypeGeoKey) in its GeoKey directory; cannot locate it")
    if gt is None:
        raise DataError(f"{path}: GeoTIFF has no ModelTransformationTag (or ModelTiepointTag + "
                        "ModelPixelScaleTag); cannot locate it")
    x0, dx, rx, y0, ry, dy = gt
    x, y = x0 + w / 2 * dx + h / 2 * rx, y0 + w / 2 * ry + h / 2 * dy
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DataError(f"{path}: GeoTIFF tags place its centre at ({x}, {y})")
    return x, y, code


@lru_cache(maxsize=32)
def _to_wgs84_transformer(crs: int | str) -> Any:
    from pyproj import CRS, Transformer

    source = CRS.from_epsg(crs) if isinstance(crs, int) else CRS.from_user_input(crs)
    return Transformer.from_crs(source, CRS.from_epsg(4326), always_xy=True)


def to_wgs84(x: float, y: float, crs: int | str, where: str,
             crs_where: str | None = None) -> tuple[float, float]:
    """``(lat, lon)`` in degrees of the point ``(x, y)`` of a CRS given by its EPSG code or
    any definition pyproj reads (WKT, PROJ string). Raises :class:`DataError` naming ``where``
    for a point it cannot place on the globe, and ``crs_where`` (default ``where``) for an
    unknown CRS."""
    from pyproj.exceptions import CRSError

    try:
        transformer = _to_wgs84_transformer(crs)
    except CRSError as exc:
        what = f"EPSG:{crs}" if isinstance(crs, int) else "definition"
        raise DataError(f"{crs_where or where}: unknown CRS {what} ({exc})") from None
    lon, lat = transformer.transform(x, y)
    return check_location(float(lat), float(lon), where)


def geotiff_location(path: str | Path) -> Location:
    """WGS84 centre of a GeoTIFF and its ``DateTime`` tag (None when absent)."""
    path = Path(path)
    x, y, epsg = georeference(path)
    lat, lon = to_wgs84(x, y, epsg, str(path))
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags.get(_TAG_DATETIME)
        text = "" if tag is None else str(tag.value).strip()
    date: dt.date | None = None
    if text:
        date = parse_date(text, f"{path}: TIFF tag DateTime")
    return Location(lat, lon, date)
