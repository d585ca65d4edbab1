"""Rasters (GeoTIFFs and every other format GDAL reads) through rasterio.

This is the one raster layer of the toolkit: training images, ``predict``, ``map`` and
``suggest-labels`` all open files here. rasterio (GDAL) decodes any compression (LZW, deflate,
ZSTD, JPEG, packbits...) and layout (strips, tiles, band-interleaved), reads windows of tiled
and Cloud-Optimised GeoTIFFs without decoding the rest, and gives the CRS, the affine transform
(rotation terms included) and the nodata (a value, NaN, or an internal/alpha mask).

Band names come from the band descriptions where every band has one; a 13-band file without
them gets the Sentinel-2 names in EuroSAT order (:data:`SENTINEL2_BANDS`); 3-band 8-bit images
are ``R, G, B``; other files have no names and their bands are selected by index.

Ground sample distance (:attr:`Raster.gsd`) is measured on the ground, not in CRS units: the
pixel's two sides at the scene centre are transformed to WGS84 and measured on the WGS84
ellipsoid, so a projected CRS in metres, one in feet, Web Mercator (whose "metres" stretch
with latitude) and a geographic CRS in degrees all give metres.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aerossl.data.location import Location, check_location, parse_date
from aerossl.errors import DataError, suggest

SENTINEL2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)
"""Default names of 13-band rasters: Sentinel-2 L1C in EuroSAT order."""

RGB_BANDS: tuple[str, ...] = ("R", "G", "B")

RGB_NAMES: tuple[frozenset[str], ...] = (
    frozenset({"R", "RED", "B04", "B4"}), frozenset({"G", "GREEN", "B03", "B3"}),
    frozenset({"B", "BLUE", "B02", "B2"}),
)
"""Band names (upper case) that stand for red, green and blue (Sentinel-2's B04, B03, B02)."""

GeoTransform = tuple[float, float, float, float, float, float]
"""GDAL-order affine ``(x0, dx, rx, y0, ry, dy)``: pixel corner ``(col, row)`` maps to
``x = x0 + col * dx + row * rx``, ``y = y0 + col * ry + row * dy`` in the raster's CRS."""


BLOCK_CACHE_BYTES = 64 * 2**20
"""GDAL's block cache is capped at this size (its default is 5 % of the machine's memory, which
a windowed read of a large scene fills: memory would grow with the scene). A ``GDAL_CACHEMAX``
environment variable set by the user wins."""


@lru_cache(maxsize=1)
def _bound_block_cache() -> None:
    """Cap GDAL's block cache once per process (see :data:`BLOCK_CACHE_BYTES`)."""
    import os

    if "GDAL_CACHEMAX" not in os.environ:
        from rasterio.env import set_gdal_config

        set_gdal_config("GDAL_CACHEMAX", BLOCK_CACHE_BYTES)


@contextmanager
def _quiet() -> Iterator[None]:
    """rasterio warns on every plain (not georeferenced) TIFF; that is not news here."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


class Raster:
    """An open raster read by windows: ``read(y, x, h, w)`` gives ``(C, h, w)`` in the file's
    dtype (outside the raster: the nodata value, or 0).

    Attributes: ``path``, ``height``, ``width``, ``count``, ``dtype``, ``names`` (see the module
    docstring), ``nodata`` (the file's value, NaN, or None), ``transform`` (GDAL order, None
    when the file has none), ``crs`` (rasterio ``CRS`` or None).
    """

    def __init__(self, path: str | Path) -> None:
        import rasterio
        from rasterio.errors import RasterioError

        self.path = Path(path)
        _bound_block_cache()
        try:
            with _quiet():
                self.ds = rasterio.open(self.path)
        except RasterioError as exc:
            raise DataError(f"{self.path}: cannot open raster ({_first_line(exc)})") from None
        ds = self.ds
        self.height, self.width, self.count = int(ds.height), int(ds.width), int(ds.count)
        if len(set(ds.dtypes)) != 1:
            self.ds.close()
            raise DataError(f"{self.path}: bands of different types ({', '.join(ds.dtypes)})")
        self.dtype = np.dtype(ds.dtypes[0])
        self.nodata: float | None = None if ds.nodata is None else float(ds.nodata)
        self.crs = ds.crs
        has_transform = not ds.transform.is_identity or ds.crs is not None
        self.transform: GeoTransform | None = (tuple(ds.transform.to_gdal()) if has_transform
                                               else None)
        self.names = _band_names(ds.descriptions, self.count, self.dtype)
        from rasterio.enums import MaskFlags

        self._masked = any(MaskFlags.all_valid not in flags for flags in ds.mask_flag_enums)

    # -------------------------------------------------------------------- description

    def describe(self) -> str:
        """``"3 bands (R, G, B), uint8"``: what a user needs to match the raster to a run."""
        bands = (f"{self.count} bands ({', '.join(self.names)})" if self.names else
                 f"{self.count} unnamed bands")
        return f"{bands}, {self.dtype}"

    def rgb_indices(self) -> list[int] | None:
        """0-based indices of the red, green and blue bands (by name, else by the file's colour
        interpretation); None when the raster does not say."""
        if self.names:
            upper = [n.upper() for n in self.names]
            found = [next((i for i, n in enumerate(upper) if n in names), None)
                     for names in RGB_NAMES]
            if None not in found:
                return [int(i) for i in found if i is not None]
        from rasterio.enums import ColorInterp

        interp = list(self.ds.colorinterp)
        wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        if all(c in interp for c in wanted):
            return [interp.index(c) for c in wanted]
        return None

    @property
    def gsd(self) -> tuple[float, float] | None:
        """Ground size ``(y, x)`` in metres of a pixel at the raster's centre; None without a
        CRS (or one pyproj cannot place)."""
        return None if self.transform is None else pixel_ground_size(
            self.transform, self.crs, self.height, self.width)

    # -------------------------------------------------------------------- reading

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """All bands of the window (clipped to the raster; outside it: nodata, or 0)."""
        out = np.full((self.count, h, w), self.fill, dtype=self.dtype)
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, self.height), min(x + w, self.width)
        if y1 > y0 and x1 > x0:
            out[:, y0 - y: y1 - y, x0 - x: x1 - x] = self._window(y0, x0, y1, x1)
        return out

    def valid(self, y: int, x: int, h: int, w: int, bands: np.ndarray | None = None
              ) -> np.ndarray:
        """``(h, w)`` bool: pixels inside the raster that hold data. No data is the file's mask
        (nodata value, NaN, alpha band or internal mask: GDAL's mask band), or, in a file that
        declares none, a pixel whose every band is 0 (the black border of an orthophoto).
        ``bands`` (the :meth:`read` of the same window) saves a second read."""
        out = np.zeros((h, w), dtype=bool)
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, self.height), min(x + w, self.width)
        if y1 <= y0 or x1 <= x0:
            return out
        if self._masked:
            from rasterio.windows import Window

            window = Window(x0, y0, x1 - x0, y1 - y0)
            masks = self._guarded(lambda: self.ds.read_masks(window=window), y0, x0, y1, x1)
            inside = (masks > 0).all(axis=0)
        else:
            data = (bands[:, y0 - y: y1 - y, x0 - x: x1 - x] if bands is not None
                    else self._window(y0, x0, y1, x1))
            inside = (data != 0).any(axis=0)
        out[y0 - y: y1 - y, x0 - x: x1 - x] = inside
        return out

    def read_all(self) -> np.ndarray:
        """The whole raster ``(C, H, W)``; a corrupt file is a :class:`DataError` naming the
        first of its own blocks (strip or tile) that does not decode."""
        try:
            return self._window(0, 0, self.height, self.width)
        except DataError as exc:
            for _, window in self.ds.block_windows(1):
                y0, x0 = int(window.row_off), int(window.col_off)
                try:
                    self._window(y0, x0, y0 + int(window.height), x0 + int(window.width))
                except DataError as block:
                    raise DataError(str(block)) from None
            raise DataError(str(exc)) from None

    def overview(self, max_side: int = 1024) -> np.ndarray:
        """The raster decimated to at most ``max_side`` px a side, as a masked array (no data
        masked); read from the file's overviews when it has them."""
        from rasterio.enums import Resampling

        f = max(1.0, max(self.height, self.width) / max_side)
        shape = (self.count, max(1, round(self.height / f)), max(1, round(self.width / f)))
        return self._guarded(lambda: self.ds.read(out_shape=shape, masked=True,
                                                  resampling=Resampling.nearest),
                             0, 0, self.height, self.width)

    @property
    def fill(self) -> float:
        """Value of pixels outside the raster."""
        return 0 if self.nodata is None or not math.isfinite(self.nodata) else self.nodata

    def _window(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        from rasterio.windows import Window

        window = Window(x0, y0, x1 - x0, y1 - y0)
        return self._guarded(lambda: self.ds.read(window=window), y0, x0, y1, x1)

    def _guarded(self, read: Any, y0: int, x0: int, y1: int, x1: int) -> Any:
        from rasterio.errors import RasterioError

        try:
            with _quiet():
                return read()
        except RasterioError as exc:
            raise DataError(f"{self.path}: cannot read window rows {y0}..{y1 - 1}, columns "
                            f"{x0}..{x1 - 1} ({_first_line(exc)}); the file is corrupt or "
                            "truncated there") from None

    def close(self) -> None:
        """Release the file."""
        self.ds.close()

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    """GDAL's own message: rasterio often says only "see previous exception" and chains it."""
    cause = exc.__cause__ or exc.__context__
    if cause is not None and "previous exception" in str(exc):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"GDAL: {text[0] if text else type(exc).__name__}"


def _band_names(descriptions: Sequence[str | None], count: int, dtype: np.dtype
                ) -> list[str] | None:
    if descriptions and len(descriptions) == count and all(descriptions):
        return [str(d) for d in descriptions]
    if count == len(SENTINEL2_BANDS):
        return list(SENTINEL2_BANDS)
    if count == 3 and dtype == np.uint8:
        return list(RGB_BANDS)
    return None


def open_raster(path: str | Path) -> Raster:
    """A :class:`Raster` (use it as a context manager); :class:`DataError` naming the file
    when it is missing or GDAL cannot open it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such raster file")
    return Raster(path)


def read_raster(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """All bands of a raster as a ``(C, H, W)`` array in the file's dtype, and their names.
    A corrupt file is a :class:`DataError` naming the file and the window that failed."""
    with open_raster(path) as raster:
        return np.ascontiguousarray(raster.read_all()), raster.names


def measure_gsd(paths: Sequence[Path], sample: int = 16) -> float | None:
    """Median ground sample distance (m/px, geometric mean of the two sides) of up to
    ``sample`` evenly spaced rasters among ``paths``; None when none of them is a raster with a
    CRS (JPEGs, plain TIFFs, patch folders)."""
    paths = [p for p in paths if Path(p).suffix.lower() in (".tif", ".tiff")]
    if not paths:
        return None
    picks = sorted({int(i) for i in np.linspace(0, len(paths) - 1, min(sample, len(paths)))})
    found = []
    for i in picks:
        try:
            with open_raster(paths[i]) as raster:
                gsd = raster.gsd
        except DataError:
            continue
        if gsd is not None:
            found.append(math.sqrt(gsd[0] * gsd[1]))
    return round(float(np.median(found)), 6) if found else None


def raster_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the header alone."""
    with open_raster(path) as raster:
        return raster.height, raster.width


# -------------------------------------------------------------------------- bands and values


def select_bands(
    names: Sequence[str] | None, count: int, bands: Sequence[str | int] | None, where: str,
    field: str = "data.bands",
) -> list[int]:
    """Indices of ``bands`` (names or 0-based indices) among ``count`` bands called ``names``;
    all bands when ``bands`` is None. An unknown name or index is a :class:`DataError` naming
    ``where`` and the ``field`` that chose it."""
    if bands is None:
        return list(range(count))
    out = []
    for band in bands:
        if isinstance(band, int) and not isinstance(band, bool):
            if not 0 <= band < count:
                raise DataError(f"{where}: {field}: band index {band} is out of range for an "
                                f"image with {count} bands (0..{count - 1})")
            out.append(band)
            continue
        if names is None:
            raise DataError(f"{where}: {field}: band '{band}' cannot be found: the image's "
                            f"{count} bands have no names (no band descriptions); select "
                            f"them by index 0..{count - 1}")
        lookup = {n.upper(): i for i, n in enumerate(names)}
        key = str(band).upper()
        if key not in lookup and key.startswith("B") and key[1:].isdigit() and len(key) == 2:
            key = f"B0{key[1:]}"  # B4 -> B04
        if key not in lookup:
            raise DataError(f"{where}: {field}: band '{band}' does not exist"
                            f"{suggest(str(band), list(names))} (bands: {', '.join(names)})")
        out.append(lookup[key])
    return out


def resize_band(band: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """One band resampled to ``size`` (``S`` or ``(H, W)``) as float32 (Pillow bicubic in float
    mode, antialiased when shrinking); a band already that size is returned unchanged."""
    h, w = (size, size) if isinstance(size, int) else size
    band = np.asarray(band, dtype=np.float32)
    if band.shape == (h, w):
        return band
    img = Image.fromarray(band, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def scale_to_uint8(
    bands: np.ndarray, band_min: Sequence[float], band_max: Sequence[float]
) -> np.ndarray:
    """``round(255 * clip((x - min) / (max - min), 0, 1))`` per band (``(C, H, W)``); NaN
    becomes 0."""
    lo = np.asarray(band_min, dtype=np.float32).reshape(-1, 1, 1)
    hi = np.asarray(band_max, dtype=np.float32).reshape(-1, 1, 1)
    span = np.maximum(hi - lo, np.float32(1e-6))
    x = np.nan_to_num((np.asarray(bands, dtype=np.float32) - lo) / span, nan=0.0)
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


# -------------------------------------------------------------------------- georeferencing


def pixel_ground_size(gt: GeoTransform, crs: Any, height: int, width: int
                      ) -> tuple[float, float] | None:
    """Ground length in metres of a pixel's column step and row step ``(y, x)`` at the centre
    of a ``height x width`` raster with affine ``gt`` in ``crs``; None without a CRS or where
    the CRS cannot be placed on the globe."""
    if crs is None:
        return None
    from pyproj import Geod
    from pyproj.exceptions import ProjError

    x0, dx, rx, y0, ry, dy = gt
    k = max(1.0, min(height, width) / 4)  # a step of several pixels, for precision
    cols, rows = width / 2, height / 2
    pts = [(cols, rows), (cols + k, rows), (cols, rows + k)]
    xs = [x0 + c * dx + r * rx for c, r in pts]
    ys = [y0 + c * ry + r * dy for c, r in pts]
    try:
        lon, lat = _to_wgs84_transformer(_crs_key(crs)).transform(xs, ys)
    except (ProjError, DataError):
        return None
    if not all(math.isfinite(v) for v in (*lon, *lat)):
        return None
    geod = Geod(ellps="WGS84")
    along_x = geod.inv(lon[0], lat[0], lon[1], lat[1])[2] / k
    along_y = geod.inv(lon[0], lat[0], lon[2], lat[2])[2] / k
    if not (along_x > 0 and along_y > 0):
        return None
    return float(along_y), float(along_x)


def _crs_key(crs: Any) -> int | str:
    """A hashable definition of a rasterio/pyproj CRS: its EPSG code, else its WKT."""
    if isinstance(crs, int | str):
        return crs
    code = crs.to_epsg()
    return int(code) if code else crs.to_wkt()


def georeference(path: str | Path) -> tuple[float, float, int | str]:
    """Centre ``(x, y)`` of the raster in its CRS and that CRS (EPSG code, else WKT); for a
    geographic CRS x is the longitude. The transform is GDAL's reading of the file (for a
    GeoTIFF: ModelTiepoint + ModelPixelScale, else ModelTransformation, rotation included).
    Raises :class:`DataError` when the file is not a readable, georeferenced raster."""
    with open_raster(path) as raster:
        if raster.crs is None:
            raise DataError(f"{raster.path}: raster has no CRS; cannot locate it")
        if raster.transform is None:
            raise DataError(f"{raster.path}: raster has no geotransform; cannot locate it")
        x0, dx, rx, y0, ry, dy = raster.transform
        w, h = raster.width, raster.height
        x, y = x0 + w / 2 * dx + h / 2 * rx, y0 + w / 2 * ry + h / 2 * dy
        crs = _crs_key(raster.crs)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DataError(f"{path}: the raster's transform places its centre at ({x}, {y})")
    return x, y, crs


@lru_cache(maxsize=32)
def _to_wgs84_transformer(crs: int | str) -> Any:
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError

    try:
        source = CRS.from_epsg(crs) if isinstance(crs, int) else CRS.from_user_input(crs)
    except CRSError as exc:
        what = f"EPSG:{crs}" if isinstance(crs, int) else "definition"
        raise DataError(f"unknown CRS {what} ({exc})") from None
    return Transformer.from_crs(source, CRS.from_epsg(4326), always_xy=True)


def to_wgs84(x: float, y: float, crs: int | str, where: str,
             crs_where: str | None = None) -> tuple[float, float]:
    """``(lat, lon)`` in degrees of the point ``(x, y)`` of a CRS given by its EPSG code or
    any definition pyproj reads (WKT, PROJ string). Raises :class:`DataError` naming ``where``
    for a point it cannot place on the globe, and ``crs_where`` (default ``where``) for an
    unknown CRS."""
    try:
        transformer = _to_wgs84_transformer(crs)
    except DataError as exc:
        raise DataError(f"{crs_where or where}: {exc}") from None
    lon, lat = transformer.transform(x, y)
    return check_location(float(lat), float(lon), where)


def geotiff_location(path: str | Path) -> Location:
    """WGS84 centre of a georeferenced raster and its TIFF ``DateTime`` (None when absent)."""
    path = Path(path)
    x, y, crs = georeference(path)
    lat, lon = to_wgs84(x, y, crs, str(path))
    with open_raster(path) as raster:
        text = str(raster.ds.tags().get("TIFFTAG_DATETIME", "")).strip()
    date: dt.date | None = None
    if text:
        date = parse_date(text, f"{path}: TIFF tag DateTime")
    return Location(lat, lon, date)


__all__ = ["RGB_BANDS", "RGB_NAMES", "SENTINEL2_BANDS", "GeoTransform", "Raster",
           "georeference", "geotiff_location", "measure_gsd", "open_raster", "pixel_ground_size",
           "raster_size", "read_raster", "resize_band", "scale_to_uint8", "select_bands",
           "to_wgs84"]
