"""Classify a large image into a land-use map: ``aerossl map RUN_DIR SCENE``.

The scene (a GeoTIFF, RGB or with the run's bands, or a plain JPEG/PNG) is cut into square
tiles of ``tile_size`` pixels every ``stride`` pixels (default both: the native size of the
run's training images before they were resized, e.g. 256 px for UC Merced), each tile is read
as the run read its training images (same bands, value scaling and resize to the run's image
size) and the tiles are classified in batches by the run's evaluated (EMA) network.

Streaming: a TIFF is read window by window, decoding only the strips or tiles of the file that
a batch of map tiles covers (uncompressed contiguous files: only those rows), one batch ahead
of the network in a thread; memory is bounded by a batch and a row of decoded file tiles,
whatever the scene's height. Write large scenes as tiled GeoTIFFs
(``gdal_translate -co TILED=YES``); a file stored as one compressed strip, and JPEG/PNG, are
decoded whole.

One map pixel per tile. Pixel ``(row, col)`` is the tile whose top-left scene pixel is
``(row * stride, col * stride)``; it stands for the ``stride x stride`` block at the tile's
centre, so the outputs' geotransform is the scene's scaled by ``stride`` and shifted by
``(tile_size - stride) / 2`` pixels. Tiles past the scene's edge are padded with no-data.
A tile more than ``max_nodata`` of whose pixels are no-data (every band equal to the GeoTIFF's
nodata value, or zero when it has none, or outside the scene) is not classified: class
:data:`NODATA_CLASS` and confidence NaN.

Outputs (in ``out_dir``, written under temporary names and renamed when all are complete):

- ``classes.tif``: uint8 class index per tile (palette colour table, nodata 255, class names
  in the GDAL metadata), ``confidence.tif``: float32 top-class probability (nodata NaN),
  ``tiles.geojson``: one polygon per classified tile with ``class``, ``class_index`` and
  ``confidence`` (WGS84 when the CRS has an EPSG code) - georeferenced scenes only;
- ``preview.png``: the scene and the map side by side with a legend; ``tiles.csv``: every
  tile's pixel box, class, confidence and status (``ok`` or ``nodata``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from PIL import Image

from aerossl.checkpoint import staged_files
from aerossl.data.decode import TIFF_EXTENSIONS
from aerossl.data.geotiff import (
    RGB_BANDS,
    GeoTransform,
    epsg_code,
    geotransform,
    resize_band,
    scale_to_uint8,
    select_bands,
)
from aerossl.errors import AerosslError, DataError
from aerossl.runs import add_run_options

log = logging.getLogger("aerossl")

NODATA_CLASS = 255
"""Class index of skipped (no-data) tiles in ``classes.tif``."""

_TAG_GEOKEYS, _TAG_GEODOUBLE, _TAG_GEOASCII = 34735, 34736, 34737
_TAG_GDAL_METADATA, _TAG_GDAL_NODATA = 42112, 42113
_KEY_RASTER_TYPE = 1025
_CACHE_BYTES = 128 * 2**20  # decoded file tiles kept for the next windows


# ----------------------------------------------------------------------------- scene reading


class Scene:
    """A large raster read window by window: ``read(y, x, h, w) -> (C, h, w)``."""

    path: Path
    height: int
    width: int
    count: int
    dtype: np.dtype
    names: list[str] | None = None
    nodata: float | None = None
    transform: GeoTransform | None = None
    epsg: int | None = None
    geo_tags: dict[int, Any]

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Bands of the window (clipped to the scene; outside it: the no-data value or 0)."""
        out = np.full((self.count, h, w), self.fill, dtype=self.dtype)
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, self.height), min(x + w, self.width)
        if y1 > y0 and x1 > x0:
            out[:, y0 - y: y1 - y, x0 - x: x1 - x] = self._read(y0, x0, y1, x1)
        return out

    @property
    def fill(self) -> float:
        """Value of pixels outside the scene."""
        return 0 if self.nodata is None or not math.isfinite(self.nodata) else self.nodata

    def _read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ArrayScene(Scene):
    """An image decoded whole (JPEG/PNG, or a TIFF that cannot be read by windows)."""

    def __init__(self, path: Path, bands: np.ndarray, names: list[str] | None) -> None:
        self.path, self.array, self.names = path, bands, names
        self.count, self.height, self.width = bands.shape
        self.dtype = bands.dtype
        self.geo_tags = {}

    def _read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        return self.array[:, y0:y1, x0:x1]


class _TiffScene(Scene):
    """A TIFF read by windows: band ``b`` is sample/plane ``s`` of page ``p``; each window
    decodes the file's strips or tiles it touches (kept, up to a size, until the windows have
    moved below them), or, for
    uncompressed contiguous pages, reads its rows straight from the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tif = tifffile.TiffFile(path)
        self.lock = threading.Lock()
        self.cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.cache_bytes = 0
        pages = [p for p in self.tif.series[0].pages if p is not None]
        page = pages[0]
        if (page.is_tiled and page.tiledepth > 1) or page.imagedepth > 1:
            raise DataError(f"{path}: volumetric TIFF (depth > 1) is not a scene")
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        spp = int(page.samplesperpixel)
        if len(pages) > 1 and spp == 1:  # one page per band (tifffile's default for C x H x W)
            self.pages = [p for p in pages if (p.imagelength, p.imagewidth)
                          == (self.height, self.width)]
            self.bands = [(i, 0) for i in range(len(self.pages))]
        else:
            self.pages = [page]
            self.bands = [(0, s) for s in range(spp)]
        self.count = len(self.bands)
        self.dtype = np.dtype(page.dtype)
        from aerossl.data.geotiff import _band_descriptions

        descriptions = _band_descriptions(page)
        if descriptions and len(descriptions) == self.count and all(descriptions):
            self.names = descriptions
        elif self.count == 3 and self.dtype == np.uint8:
            self.names = list(RGB_BANDS)
        else:
            from aerossl.data.geotiff import SENTINEL2_BANDS

            self.names = list(SENTINEL2_BANDS) if self.count == len(SENTINEL2_BANDS) else None
        tag = page.tags.get(_TAG_GDAL_NODATA)
        self.nodata = None
        if tag is not None:
            try:
                self.nodata = float(str(tag.value).strip("\x00 "))
            except ValueError:
                self.nodata = None
        self.transform = geotransform(page)
        self.epsg = epsg_code(page)
        self.geo_tags = {code: page.tags[code].value for code in
                         (_TAG_GEOKEYS, _TAG_GEODOUBLE, _TAG_GEOASCII) if code in page.tags}
        self.whole: np.ndarray | None = None
        if not all(p.is_memmappable or _segmented(p) for p in self.pages):
            warnings.warn(f"{path}: stored as one compressed strip, so it is decoded whole "
                          "(memory: the full scene); write it as a tiled GeoTIFF to stream it",
                          stacklevel=3)
            from aerossl.data.geotiff import read_raster

            self.whole = read_raster(path)[0]

    def close(self) -> None:
        self.tif.close()

    def _read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        if self.whole is not None:
            return self.whole[:, y0:y1, x0:x1]
        out = np.empty((self.count, y1 - y0, x1 - x0), dtype=self.dtype)
        with self.lock:  # one file handle
            for p, page in enumerate(self.pages):
                chosen = [(b, s) for b, (pi, s) in enumerate(self.bands) if pi == p]
                if page.is_memmappable:
                    self._read_rows(page, chosen, out, y0, x0, y1, x1)
                else:
                    self._read_segments(p, page, chosen, out, y0, x0, y1, x1)
        return out

    def _read_rows(self, page: tifffile.TiffPage, chosen: list[tuple[int, int]],
                   out: np.ndarray, y0: int, x0: int, y1: int, x1: int) -> None:
        """Uncompressed contiguous data: read each row's span from the file."""
        fh, item = self.tif.filehandle, self.dtype.itemsize
        offset = int(page.dataoffsets[0])
        byteorder = self.tif.byteorder
        dtype = self.dtype.newbyteorder(byteorder)
        w = x1 - x0
        if page.planarconfig == 2 or (len(chosen) == 1 and int(page.samplesperpixel) == 1):
            for b, s in chosen:
                plane = offset + s * self.height * self.width * item
                for r, y in enumerate(range(y0, y1)):
                    fh.seek(plane + (y * self.width + x0) * item)
                    out[b, r] = np.frombuffer(fh.read(w * item), dtype=dtype)
        else:
            spp = int(page.samplesperpixel)
            for r, y in enumerate(range(y0, y1)):
                fh.seek(offset + (y * self.width + x0) * spp * item)
                row = np.frombuffer(fh.read(w * spp * item), dtype=dtype).reshape(w, spp)
                for b, s in chosen:
                    out[b, r] = row[:, s]

    def _segment(self, p: int, page: tifffile.TiffPage, index: int) -> np.ndarray:
        """Decoded file tile/strip ``index`` of page ``p`` as ``(h, w, samples)``."""
        key = (p, index)
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        fh = self.tif.filehandle
        fh.seek(int(page.dataoffsets[index]))
        data = fh.read(int(page.databytecounts[index]))
        try:
            arr = np.asarray(page.decode(data, index, jpegtables=page.jpegtables)[0])[0]
        except Exception as exc:  # codec missing, corrupt data
            hint = (" (pip install imagecodecs reads JPEG, LZW, ZSTD... compressed TIFFs)"
                    if "imagecodecs" in str(exc) else "")
            raise DataError(f"{self.path}: cannot decode TIFF strip/tile {index} "
                            f"({type(exc).__name__}: {exc}){hint}") from None
        self.cache[key] = arr
        self.cache_bytes += arr.nbytes
        while self.cache_bytes > _CACHE_BYTES and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.cache_bytes -= old.nbytes
        return arr

    def _read_segments(self, p: int, page: tifffile.TiffPage, chosen: list[tuple[int, int]],
                       out: np.ndarray, y0: int, x0: int, y1: int, x1: int) -> None:
        if page.is_tiled:
            th, tw = int(page.tilelength), int(page.tilewidth)
        else:
            th, tw = int(page.rowsperstrip or self.height), self.width
        th = min(th, self.height)
        across, down = -(-self.width // tw), -(-self.height // th)
        separate = page.planarconfig == 2 and int(page.samplesperpixel) > 1
        # the map reads top-down: file tiles wholly above this window are not needed again
        for key in [k for k in self.cache if k[0] == p and (k[1] % (across * down) // across
                                                             + 1) * th <= y0]:
            self.cache_bytes -= self.cache.pop(key).nbytes
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                sy, sx = ty * th, tx * tw
                ya, yb = max(y0, sy), min(y1, sy + th)
                xa, xb = max(x0, sx), min(x1, sx + tw)
                for b, s in chosen:
                    plane = s if separate else 0
                    seg = self._segment(p, page, plane * across * down + ty * across + tx)
                    sample = 0 if separate else s
                    out[b, ya - y0: yb - y0, xa - x0: xb - x0] = \
                        seg[ya - sy: yb - sy, xa - sx: xb - sx, sample]


def _segmented(page: tifffile.TiffPage) -> bool:
    """True when the page is stored in several strips or tiles (readable by windows)."""
    return len(page.dataoffsets) > (int(page.samplesperpixel) if page.planarconfig == 2 else 1)


def open_scene(path: str | Path) -> Scene:
    """A scene reader for a TIFF (by windows) or a JPEG/PNG (decoded whole)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such scene file")
    if path.suffix.lower() in TIFF_EXTENSIONS:
        try:
            return _TiffScene(path)
        except DataError:
            raise
        except Exception as exc:  # tifffile raises many types on corrupt data
            raise DataError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    bomb = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # a scene is large on purpose
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = bomb
    return _ArrayScene(path, np.ascontiguousarray(rgb.transpose(2, 0, 1)), list(RGB_BANDS))


# ----------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``size`` px every ``stride`` px covering a ``height x width`` scene."""

    height: int
    width: int
    size: int
    stride: int

    @property
    def rows(self) -> int:
        """Tile rows (the last may stick out of the scene)."""
        return max(1, -(-(self.height - self.size) // self.stride) + 1)

    @property
    def cols(self) -> int:
        """Tile columns."""
        return max(1, -(-(self.width - self.size) // self.stride) + 1)

    def __len__(self) -> int:
        return self.rows * self.cols

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """Top-left scene pixel ``(y, x)`` of a tile."""
        return row * self.stride, col * self.stride

    def map_transform(self, gt: GeoTransform) -> GeoTransform:
        """Affine of the map (one pixel per tile, centred on the tile) from the scene's."""
        x0, dx, rx, y0, ry, dy = gt
        off = (self.size - self.stride) / 2
        s = self.stride
        return (x0 + off * (dx + rx), dx * s, rx * s, y0 + off * (ry + dy), ry * s, dy * s)


@dataclass
class BandReader:
    """How scene tiles become the run's ``uint8 (C, S, S)`` inputs: the chosen bands, their
    value scaling (``None``: 8-bit data kept as is) and the resize to ``image_size``."""

    select: list[int]
    image_size: int
    band_min: list[float] | None = None
    band_max: list[float] | None = None
    rgb: bool = True  # 8-bit RGB run: Pillow bicubic on the RGB tile, as read_image does

    def __call__(self, bands: np.ndarray) -> np.ndarray:
        chosen = bands[self.select]
        s = self.image_size
        if self.rgb:
            hwc = np.ascontiguousarray(chosen.transpose(1, 2, 0))
            if hwc.shape[:2] != (s, s):
                hwc = np.asarray(Image.fromarray(hwc, mode="RGB").resize(
                    (s, s), Image.Resampling.BICUBIC))
            return np.ascontiguousarray(hwc.transpose(2, 0, 1))
        raw = np.stack([resize_band(b, s) for b in chosen])
        if self.band_min is None or self.band_max is None:
            return np.rint(np.clip(raw, 0, 255)).astype(np.uint8)
        return scale_to_uint8(raw, self.band_min, self.band_max)


def _describe(names: list[str] | None, count: int) -> str:
    return f"{count} bands ({', '.join(names)})" if names else f"{count} unnamed bands"


def band_reader(scene: Scene, info: dict[str, Any], run_dir: Path) -> BandReader:
    """The :class:`BandReader` of ``scene`` for a run (``info`` of ``load_run_network``); a
    scene whose bands do not match the run's is a :class:`DataError` naming both."""
    channels, bands = int(info["channels"]), info.get("bands")
    band_min, band_max = info.get("band_min"), info.get("band_max")
    rgb_run = channels == 3 and bands is None and band_min is None
    run_bands = (", ".join(map(str, bands)) if bands else
                 "R, G, B" if rgb_run else f"{channels} bands")
    problem = (f"scene {scene.path} has {_describe(scene.names, scene.count)}, {scene.dtype}, "
               f"but the run {run_dir} takes {channels} bands ({run_bands})")
    if rgb_run:
        if scene.dtype != np.uint8:
            raise DataError(f"{problem} of 8-bit data; convert the scene to 8-bit RGB")
        if scene.count in (3, 4):  # RGB or RGBA
            return BandReader([0, 1, 2], info["image_size"])
        if scene.count == 1:  # grayscale, as read_image makes it RGB
            return BandReader([0, 0, 0], info["image_size"])
        raise DataError(problem)
    if bands is None:
        if scene.count != channels:
            raise DataError(problem)
        select = list(range(channels))
    else:
        try:
            select = select_bands(scene.names, scene.count, bands, str(scene.path))
        except DataError as exc:
            raise DataError(f"{problem}: {exc}") from None
    if band_min is None and scene.dtype != np.uint8:
        raise DataError(f"{problem} of 8-bit data (the run recorded no band_min/band_max)")
    return BandReader(select, info["image_size"], band_min, band_max, rgb=False)


def nodata_fraction(bands: np.ndarray, nodata: float | None) -> float:
    """Share of pixels whose every band is the no-data value (zero when there is none)."""
    value = 0 if nodata is None else nodata
    if isinstance(value, float) and math.isnan(value):
        empty = np.isnan(bands).all(axis=0)
    else:
        empty = (bands == value).all(axis=0)
    return float(empty.mean())


# ----------------------------------------------------------------------------- tile size


def native_tile_size(cfg: Any, run_dir: Path, sample: int = 64) -> int:
    """Median native size (``sqrt(h * w)``, px) of up to ``sample`` of the run's images read
    from their headers: the scale the run learnt, the default tile size of a map."""
    from aerossl.engine.data import read_dataset

    try:
        dataset, _ = read_dataset(cfg.data)
    except AerosslError as exc:
        raise DataError(f"cannot find the training images of {run_dir} ({exc}) to derive the "
                        "tile size; give it with --tile-size") from None
    n = len(dataset.files)
    picks = sorted({int(i) for i in np.linspace(0, n - 1, min(sample, n))}) if n else []
    sizes = []
    for i in picks:
        path = dataset.root / dataset.files[i]
        try:
            if path.suffix.lower() in TIFF_EXTENSIONS:
                with tifffile.TiffFile(path) as tif:
                    page = tif.pages[0]
                    h, w = int(page.imagelength), int(page.imagewidth)
            else:
                with Image.open(path) as img:
                    w, h = img.size
        except Exception:  # an unreadable file says nothing about the scale
            continue
        sizes.append(math.sqrt(h * w))
    if not sizes:
        raise DataError(f"no readable training images of {run_dir} under {dataset.root} to "
                        "derive the tile size; give it with --tile-size")
    return round(float(np.median(sizes)))


# ----------------------------------------------------------------------------- outputs


def class_colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 distinct colours (matplotlib tab20, tab20b, then hsv)."""
    from matplotlib import colormaps

    base = [colormaps["tab20"](i)[:3] for i in range(20)]
    base += [colormaps["tab20b"](i)[:3] for i in range(20)]
    if n > len(base):
        base += [colormaps["hsv"](i / (n - len(base)))[:3] for i in range(n - len(base))]
    return (np.asarray(base[:n]) * 255).round().astype(np.uint8)


def _geo_extratags(scene: Scene, gt: GeoTransform) -> list[tuple]:
    """GeoTIFF tags of a map: its affine, and the scene's CRS keys (raster type: area)."""
    x0, dx, rx, y0, ry, dy = gt
    if rx == 0 and ry == 0 and dx > 0 and dy < 0:
        tags: list[tuple] = [(33550, "d", 3, (dx, -dy, 0.0), False),
                             (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), False)]
    else:
        matrix = (dx, rx, 0.0, x0, ry, dy, 0.0, y0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        tags = [(34264, "d", 16, matrix, False)]
    keys = scene.geo_tags.get(_TAG_GEOKEYS)
    if keys is not None:
        keys = [int(v) for v in keys]
        entries = {keys[4 + 4 * k]: keys[4 + 4 * k: 8 + 4 * k] for k in range(keys[3])}
        entries[_KEY_RASTER_TYPE] = [_KEY_RASTER_TYPE, 0, 1, 1]  # the map's gt is corner-based
        keys = keys[:3] + [len(entries)] + [v for k in sorted(entries) for v in entries[k]]
        tags.append((_TAG_GEOKEYS, "H", len(keys), keys, False))
    if _TAG_GEODOUBLE in scene.geo_tags:
        values = tuple(float(v) for v in scene.geo_tags[_TAG_GEODOUBLE])
        tags.append((_TAG_GEODOUBLE, "d", len(values), values, False))
    if _TAG_GEOASCII in scene.geo_tags:
        tags.append((_TAG_GEOASCII, "s", 0, str(scene.geo_tags[_TAG_GEOASCII]), False))
    return tags


def _gdal_metadata(items: dict[str, str]) -> str:
    from xml.sax.saxutils import escape

    body = "".join(f'<Item name="{escape(k)}">{escape(v)}</Item>' for k, v in items.items())
    return f"<GDALMetadata>{body}</GDALMetadata>"


def write_class_geotiff(path: Path, classes_map: np.ndarray, scene: Scene, gt: GeoTransform,
                        names: list[str]) -> None:
    """uint8 class indices with a palette, nodata :data:`NODATA_CLASS` and the class names."""
    colors = np.zeros((256, 3), dtype=np.uint16)
    colors[: len(names)] = class_colors(len(names)).astype(np.uint16) * 257
    meta = {"CLASSES": json.dumps(names), **{f"CLASS_{i}": n for i, n in enumerate(names)},
            "NODATA_CLASS": str(NODATA_CLASS)}
    tags = [*_geo_extratags(scene, gt), (_TAG_GDAL_METADATA, "s", 0, _gdal_metadata(meta), False),
            (_TAG_GDAL_NODATA, "s", 0, str(NODATA_CLASS), False)]
    tifffile.imwrite(path, classes_map, photometric="palette", colormap=colors.T,
                     compression="zlib", extratags=tags, metadata=None)


def write_confidence_geotiff(path: Path, confidence: np.ndarray, scene: Scene,
                             gt: GeoTransform) -> None:
    """float32 top-class probability per tile, nodata NaN."""
    meta = {"DESCRIPTION": "probability of the predicted class"}
    tags = [*_geo_extratags(scene, gt), (_TAG_GDAL_METADATA, "s", 0, _gdal_metadata(meta), False),
            (_TAG_GDAL_NODATA, "s", 0, "nan", False)]
    tifffile.imwrite(path, confidence.astype(np.float32), photometric="minisblack",
                     compression="zlib", extratags=tags, metadata=None)


def write_geojson(path: Path, classes_map: np.ndarray, confidence: np.ndarray, grid: TileGrid,
                  scene: Scene, names: list[str]) -> str:
    """Tile polygons with class and confidence; WGS84 lon/lat when the scene's CRS has an EPSG
    code, else the scene's own coordinates. Returns the CRS written."""
    assert scene.transform is not None
    x0, dx, rx, y0, ry, dy = scene.transform
    rows, cols = np.nonzero(classes_map != NODATA_CLASS)
    corners_px = np.array([(0, 0), (grid.size, 0), (grid.size, grid.size), (0, grid.size)])
    cx = cols[:, None] * grid.stride + corners_px[None, :, 0]  # (N, 4) scene columns
    cy = rows[:, None] * grid.stride + corners_px[None, :, 1]
    xs, ys = x0 + cx * dx + cy * rx, y0 + cx * ry + cy * dy
    crs = f"EPSG:{scene.epsg}" if scene.epsg else "scene CRS (no EPSG code)"
    if scene.epsg and scene.epsg != 4326:
        from pyproj import Transformer

        try:
            transformer = Transformer.from_crs(f"EPSG:{scene.epsg}", "EPSG:4326", always_xy=True)
            xs, ys = transformer.transform(xs, ys)
            crs = "EPSG:4326"
        except Exception as exc:  # unknown code: keep the scene's coordinates
            log.warning("map: cannot transform EPSG:%s to WGS84 (%s); GeoJSON in the scene's "
                        "CRS", scene.epsg, exc)
    elif scene.epsg == 4326:
        crs = "EPSG:4326"
    with path.open("w") as fh:
        fh.write('{"type": "FeatureCollection",\n')
        if crs != "EPSG:4326" and scene.epsg:
            fh.write(f'"crs": {{"type": "name", "properties": {{"name": "{crs}"}}}},\n')
        fh.write('"features": [\n')
        for n, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            ring = [[round(float(a), 9), round(float(b), 9)] for a, b in
                    zip(xs[n], ys[n], strict=True)]
            k = int(classes_map[r, c])
            feature = {"type": "Feature",
                       "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                       "properties": {"row": r, "col": c, "class": names[k], "class_index": k,
                                      "confidence": round(float(confidence[r, c]), 6)}}
            fh.write(("," if n else "") + json.dumps(feature) + "\n")
        fh.write("]}\n")
    return crs


def write_tiles_csv(path: Path, classes_map: np.ndarray, confidence: np.ndarray,
                    grid: TileGrid, names: list[str]) -> None:
    """One row per tile: ``row, col, x0, y0, x1, y1`` (scene pixels), class, confidence,
    status (``ok`` or ``nodata``)."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["row", "col", "x0", "y0", "x1", "y1", "class", "confidence", "status"])
        for r in range(grid.rows):
            for c in range(grid.cols):
                y, x = grid.origin(r, c)
                k = int(classes_map[r, c])
                ok = k != NODATA_CLASS
                out.writerow([r, c, x, y, x + grid.size, y + grid.size, names[k] if ok else "",
                              f"{confidence[r, c]:.6f}" if ok else "", "ok" if ok else "nodata"])


def write_preview(path: Path, classes_map: np.ndarray, thumbnail: np.ndarray | None,
                  names: list[str], title: str) -> None:
    """PNG: the scene (thumbnail) and the map side by side, with a legend of the classes
    present (and of skipped tiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[: len(names)] = class_colors(len(names))
    colors[NODATA_CLASS] = (40, 40, 40)
    rgb = colors[classes_map]
    present = [k for k in range(len(names)) if (classes_map == k).any()]
    panels = 2 if thumbnail is not None else 1
    aspect = classes_map.shape[1] / max(classes_map.shape[0], 1)
    fig_h = 5.0
    fig, axes = plt.subplots(1, panels, figsize=(min(fig_h * aspect, 12) * panels, fig_h),
                             squeeze=False)
    if thumbnail is not None:
        axes[0, 0].imshow(thumbnail, interpolation="nearest")
        axes[0, 0].set_title("scene")
    axes[0, -1].imshow(rgb, interpolation="nearest")
    axes[0, -1].set_title("map")
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=colors[k] / 255, label=names[k]) for k in present]
    if (classes_map == NODATA_CLASS).any():
        handles.append(Patch(color=colors[NODATA_CLASS] / 255, label="no data (skipped)"))
    axes[0, -1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                       fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)


# ----------------------------------------------------------------------------- map


@dataclass
class MapResult:
    """What :func:`map_scene` wrote and measured."""

    out_dir: Path
    files: dict[str, Path]
    rows: int
    cols: int
    tile_size: int
    stride: int
    num_tiles: int
    num_classified: int
    num_skipped: int
    georeferenced: bool
    transform: GeoTransform | None
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)

    @property
    def tiles_per_second(self) -> float:
        """Tiles (read, skipped or classified) per second."""
        return self.num_tiles / self.seconds if self.seconds > 0 else float("nan")


def _batches(grid: TileGrid, batch_size: int) -> Iterator[list[tuple[int, int]]]:
    """Tile positions in row order, in batches that stay within one tile row."""
    for r in range(grid.rows):
        for c0 in range(0, grid.cols, batch_size):
            yield [(r, c) for c in range(c0, min(c0 + batch_size, grid.cols))]


def map_scene(
    run_dir: str | Path,
    scene_path: str | Path,
    out_dir: str | Path | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    max_nodata: float = 0.5,
    checkpoint: str = "last",
    device: str = "auto",
    progress: bool = True,
) -> MapResult:
    """Classify the tiles of a large scene with a run's model and write the map (see the
    module docstring for the outputs). ``tile_size`` default: :func:`native_tile_size` of the
    run; ``stride`` default: ``tile_size``; ``out_dir`` default: ``<scene stem>_map`` next to
    the scene."""
    from tqdm import tqdm

    from aerossl.runs import load_run_config, load_run_network, resolve_device
    from aerossl.tasks import get_task

    start = time.perf_counter()
    run_dir, scene_path = Path(run_dir), Path(scene_path).expanduser()
    if batch_size < 1:
        raise AerosslError(f"batch_size must be at least 1, got {batch_size}")
    if not 0.0 <= max_nodata <= 1.0:
        raise AerosslError(f"max_nodata must be in [0, 1], got {max_nodata}")
    dev = resolve_device(device)
    network, info = load_run_network(run_dir, checkpoint, dev)
    names = list(info["classes"])
    if info.get("task", "multiclass") != "multiclass":
        raise AerosslError(f"{run_dir} is a {info['task']} run; a map has one class per tile, so "
                           "it needs a multiclass run")
    task = get_task("multiclass")
    if len(names) >= NODATA_CLASS:
        raise AerosslError(f"{run_dir} has {len(names)} classes; a map holds at most 254")
    if tile_size is None:
        tile_size = native_tile_size(load_run_config(run_dir), run_dir)
        log.info("map: tile size %d px (median native size of the run's images)", tile_size)
    stride = tile_size if stride is None else stride
    if tile_size < 1 or stride < 1:
        raise AerosslError(f"tile size and stride must be positive, got {tile_size}, {stride}")
    out = Path(out_dir) if out_dir else scene_path.with_name(scene_path.stem + "_map")

    with open_scene(scene_path) as scene:
        reader = band_reader(scene, info, run_dir)
        grid = TileGrid(scene.height, scene.width, tile_size, stride)
        georef = scene.transform is not None
        if not georef:
            warnings.warn(f"{scene_path} is not georeferenced (no GeoTIFF tiepoint/pixel scale "
                          "or transformation): writing only preview.png and tiles.csv",
                          stacklevel=2)
        classes_map = np.full((grid.rows, grid.cols), NODATA_CLASS, dtype=np.uint8)
        confidence = np.full((grid.rows, grid.cols), np.nan, dtype=np.float32)
        thumb_px = max(1, min(32, 1024 // max(grid.rows, grid.cols)))
        thumbnail = np.zeros((grid.rows * thumb_px, grid.cols * thumb_px, 3), dtype=np.uint8)

        def load(batch: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], np.ndarray]:
            """Read one batch of tiles (in a thread, one batch ahead of the network)."""
            r = batch[0][0]
            y, x = grid.origin(r, batch[0][1])
            span = grid.origin(r, batch[-1][1])[1] + tile_size - x
            window = scene.read(y, x, tile_size, span)
            keep, tiles = [], []
            for (row, col) in batch:
                xo = col * stride - x
                tile = window[:, :, xo: xo + tile_size]
                if nodata_fraction(tile, scene.nodata) > max_nodata:
                    continue
                keep.append((row, col))
                tiles.append(reader(tile))
            return keep, (np.stack(tiles) if tiles else np.empty((0,)))

        batches = _batches(grid, batch_size)  # a generator: memory does not grow with tiles
        with (ThreadPoolExecutor(1) as pool,
              tqdm(total=len(grid), unit="tile", desc="map", disable=not progress) as bar):
            batch: list[tuple[int, int]] | None = next(batches)
            pending = pool.submit(load, batch)
            while batch is not None:
                keep, tiles = pending.result()
                following = next(batches, None)
                if following is not None:
                    pending = pool.submit(load, following)  # read ahead of the network
                if keep:
                    x = torch.from_numpy(tiles)
                    with torch.inference_mode():
                        probs = task.probs(network(x.to(dev).float().div_(255.0)).float())
                    conf, pred = probs.max(dim=1)
                    small = torch.nn.functional.adaptive_avg_pool2d(
                        x[:, :3].float() if x.shape[1] >= 3 else x[:, :1].float().expand(
                            -1, 3, -1, -1), thumb_px).round().byte().permute(0, 2, 3, 1).numpy()
                    for (r, c), k, p, t in zip(keep, pred.tolist(), conf.tolist(), small,
                                               strict=True):
                        classes_map[r, c], confidence[r, c] = k, p
                        thumbnail[r * thumb_px: (r + 1) * thumb_px,
                                  c * thumb_px: (c + 1) * thumb_px] = t
                bar.update(len(batch))
                batch = following

        out.mkdir(parents=True, exist_ok=True)
        targets = {"preview": out / "preview.png", "tiles_csv": out / "tiles.csv"}
        if georef:
            targets.update(classes=out / "classes.tif", confidence=out / "confidence.tif",
                           geojson=out / "tiles.geojson")
        with staged_files(targets) as temps:
            title = (f"{scene_path.name}: {grid.rows} x {grid.cols} tiles of {tile_size} px "
                     f"(stride {stride}), run {run_dir.name}")
            write_preview(temps["preview"], classes_map, thumbnail, names, title)
            write_tiles_csv(temps["tiles_csv"], classes_map, confidence, grid, names)
            map_gt = None
            if georef:
                assert scene.transform is not None
                map_gt = grid.map_transform(scene.transform)
                write_class_geotiff(temps["classes"], classes_map, scene, map_gt, names)
                write_confidence_geotiff(temps["confidence"], confidence, scene, map_gt)
                write_geojson(temps["geojson"], classes_map, confidence, grid, scene, names)
    skipped = int((classes_map == NODATA_CLASS).sum())
    counts = {names[k]: int(v) for k, v in zip(*np.unique(classes_map, return_counts=True),
                                               strict=True) if k != NODATA_CLASS}
    return MapResult(out, targets, grid.rows, grid.cols, tile_size, stride, len(grid),
                     len(grid) - skipped, skipped, georef, map_gt,
                     time.perf_counter() - start, names, counts)


# ----------------------------------------------------------------------------- CLI


def _handler(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}")
        res = map_scene(args.run_dir, args.scene, args.out, args.tile_size, args.stride,
                        args.batch_size, args.max_nodata, args.checkpoint, args.device)
    print(f"mapped {res.num_tiles} tiles ({res.rows} x {res.cols}, {res.tile_size} px, stride "
          f"{res.stride}): {res.num_classified} classified, {res.num_skipped} skipped as no data, "
          f"{res.seconds:.1f} s ({res.tiles_per_second:.1f} tiles/s)")
    for key, path in res.files.items():
        print(f"  {key}: {path}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``map RUN_DIR SCENE`` on an ``add_subparsers()`` object."""
    p = subparsers.add_parser("map", help="classify a large GeoTIFF/JPEG/PNG into a tile map")
    p.add_argument("run_dir", help="run folder (config.yaml + checkpoints/)")
    p.add_argument("scene", help="large GeoTIFF (RGB or the run's bands), JPEG or PNG")
    p.add_argument("--out", "-o", default=None, help="output folder (default: SCENE_map)")
    p.add_argument("--tile-size", type=int, default=None,
                   help="tile size in scene pixels (default: native size of the run's images)")
    p.add_argument("--stride", type=int, default=None, help="tile step in px (default: tile)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-nodata", type=float, default=0.5,
                   help="skip tiles with more than this share of no-data pixels")
    add_run_options(p)
    p.set_defaults(func=_handler)
    return p


__all__ = ["NODATA_CLASS", "MapResult", "Scene", "TileGrid", "add_parser", "map_scene",
           "native_tile_size", "open_scene"]
