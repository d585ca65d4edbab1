"""The reading side of a map: the scene, its tiles on the ground, and how a tile becomes the
run's input.

- :func:`open_scene`: a GeoTIFF (any raster GDAL reads) through :mod:`aerossl.data.raster`,
  read by windows; a JPEG/PNG decoded whole with Pillow.
- :func:`plan_tiles`: the tile window in scene pixels. When the run's ground sample distance
  (``data.gsd_m``, recorded at training) and the scene's are both known, a tile covers the same
  ground as a training image (``native px x run GSD`` metres a side) whatever the scene's
  resolution, and is resampled to the run's input size; ``--tile-m``/``--stride-m`` set it in
  metres; otherwise tiles are sized in pixels and the map says so.
- :func:`band_reader`: which scene bands feed the run (the run's bands by name, the scene's
  red/green/blue for an RGB run, or ``--bands``), and their scaling: the run's recorded
  ``band_min``/``band_max``, or, for a 16-bit or float scene and a run of 8-bit images, a
  percentile stretch of the scene stated in the log and the map's metadata.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aerossl.data.decode import TIFF_EXTENSIONS, resize_rgb
from aerossl.data.multispectral import resize_bands, to_uint8
from aerossl.data.raster import (
    RGB_BANDS,
    GeoTransform,
    Raster,
    open_raster,
    select_bands,
)
from aerossl.data.reader import reads_rgb
from aerossl.errors import AerosslError, DataError

log = logging.getLogger("aerossl")

DEFAULT_STRETCH = (2.0, 98.0)
"""Percentiles of a 16-bit/float scene mapped to 0 and 255 for a run of 8-bit images."""

GSD_WARN_RATIO = 4.0
"""A scene this many times finer or coarser than the run's images gets a warning."""


class ImageScene:
    """A JPEG/PNG scene decoded whole: the same reading interface as :class:`Raster`, without
    georeferencing."""

    nodata = None
    transform: GeoTransform | None = None
    crs = None
    gsd = None
    fill = 0

    def __init__(self, path: Path, bands: np.ndarray) -> None:
        self.path, self.array, self.names = path, bands, list(RGB_BANDS)
        self.count, self.height, self.width = bands.shape
        self.dtype = bands.dtype

    def describe(self) -> str:
        return f"{self.count} bands (R, G, B), {self.dtype}"

    def rgb_indices(self) -> list[int]:
        return [0, 1, 2]

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        out = np.zeros((self.count, h, w), dtype=self.dtype)
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, self.height), min(x + w, self.width)
        if y1 > y0 and x1 > x0:
            out[:, y0 - y: y1 - y, x0 - x: x1 - x] = self.array[:, y0:y1, x0:x1]
        return out

    def valid(self, y: int, x: int, h: int, w: int, bands: np.ndarray | None = None
              ) -> np.ndarray:
        data = self.read(y, x, h, w) if bands is None else bands
        return (data != 0).any(axis=0)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> ImageScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Scene = Raster | ImageScene


def open_scene(path: str | Path) -> Scene:
    """A scene reader: a raster GDAL reads (by windows), or a JPEG/PNG (decoded whole)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such scene file")
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return open_raster(path)
    bomb = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # a scene is large on purpose
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = bomb
    return ImageScene(path, np.ascontiguousarray(rgb.transpose(2, 0, 1)))


# ----------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``size`` (rows, cols) px every ``stride`` (rows, cols) px covering a
    ``height x width`` scene."""

    height: int
    width: int
    size: tuple[int, int]
    stride: tuple[int, int]

    @property
    def rows(self) -> int:
        """Tile rows (the last may stick out of the scene)."""
        return max(1, -(-(self.height - self.size[0]) // self.stride[0]) + 1)

    @property
    def cols(self) -> int:
        """Tile columns."""
        return max(1, -(-(self.width - self.size[1]) // self.stride[1]) + 1)

    def __len__(self) -> int:
        return self.rows * self.cols

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """Top-left scene pixel ``(y, x)`` of a tile."""
        return row * self.stride[0], col * self.stride[1]

    def map_transform(self, gt: GeoTransform) -> GeoTransform:
        """Affine of the map (one pixel per tile, centred on the tile's central stride block)
        from the scene's."""
        x0, dx, rx, y0, ry, dy = gt
        oy, ox = ((s - t) / 2 for s, t in zip(self.size, self.stride, strict=True))
        sy, sx = self.stride
        return (x0 + ox * dx + oy * rx, dx * sx, rx * sy, y0 + ox * ry + oy * dy, ry * sx,
                dy * sy)


@dataclass(frozen=True)
class TilePlan:
    """Tile and stride in scene pixels ``(rows, cols)``, the tile's side on the ground (None:
    sized in pixels) and a line saying how they were chosen."""

    size: tuple[int, int]
    stride: tuple[int, int]
    tile_m: float | None
    stride_m: float | None
    note: str


def plan_tiles(
    scene: Scene, run_gsd: float | None, native_px: Any, tile_size: int | None = None,
    stride: int | None = None, tile_m: float | None = None, stride_m: float | None = None,
) -> TilePlan:
    """Tile windows of ``scene`` (see the module docstring). ``native_px`` is called for the
    run's native image size in pixels only when it is needed."""
    for name, value in (("tile size", tile_size), ("stride", stride), ("--tile-m", tile_m),
                        ("--stride-m", stride_m)):
        if value is not None and not value > 0:
            raise AerosslError(f"{name} must be positive, got {value}")
    if tile_size is not None and tile_m is not None:
        raise AerosslError("give the tile size in pixels (--tile-size) or in metres (--tile-m), "
                           "not both")
    gsd = scene.gsd
    if (tile_m is not None or stride_m is not None) and gsd is None:
        raise DataError(f"{scene.path}: the scene's ground resolution is unknown (no CRS that "
                        "places it on the globe), so tiles cannot be sized in metres; pass "
                        "--tile-size and --stride in pixels")
    note = ""
    if run_gsd and gsd:
        ratio = math.sqrt(gsd[0] * gsd[1]) / run_gsd
        if max(ratio, 1 / ratio) > GSD_WARN_RATIO * 1.01:  # 1 %: measured on the ellipsoid
            warnings.warn(f"{scene.path}: the scene's ground resolution "
                          f"({math.sqrt(gsd[0] * gsd[1]):.4g} m/px) differs from the run's "
                          f"({run_gsd:.4g} m/px) by {max(ratio, 1 / ratio):.1f}x; its tiles are "
                          "resampled that much", stacklevel=3)
    if tile_m is None and tile_size is None and run_gsd and gsd:
        px = int(native_px())
        tile_m = px * run_gsd
        note = (f"tiles of {tile_m:.4g} m, the ground of a training image ({px} px of "
                f"{run_gsd:.4g} m); scene pixels {gsd[1]:.4g} x {gsd[0]:.4g} m")
    if tile_m is not None:
        assert gsd is not None
        size = (max(1, round(tile_m / gsd[0])), max(1, round(tile_m / gsd[1])))
        note = note or f"tiles of {tile_m:.4g} m (--tile-m)"
    else:
        side = int(tile_size) if tile_size is not None else int(native_px())
        size = (side, side)
        if tile_size is not None:
            note = f"tiles of {side} px (--tile-size)"
        else:
            unknown = " and ".join(w for w, g in (("the run", run_gsd), ("the scene", gsd))
                                   if not g)
            note = (f"tiles of {side} px, the native size of the run's images, in pixels: the "
                    f"ground resolution of {unknown} is unknown (set data.gsd_m in the run's "
                    "config, or use --tile-m)")
            log.warning("map: %s", note)
    if stride_m is not None:
        assert gsd is not None
        step = (max(1, round(stride_m / gsd[0])), max(1, round(stride_m / gsd[1])))
    elif stride is not None:
        step = (int(stride), int(stride))
    else:
        step = size
        stride_m = tile_m
    return TilePlan(size, step, tile_m, stride_m, note)


# ----------------------------------------------------------------------------- bands


@dataclass
class BandReader:
    """How scene tiles become the run's ``uint8 (C, S, S)`` inputs: the chosen bands, their
    value scaling (``None``: 8-bit data kept as is), the resize to ``image_size`` and a line
    saying how values were scaled."""

    select: list[int]
    image_size: int
    band_min: list[float] | None = None
    band_max: list[float] | None = None
    rgb: bool = True  # 8-bit RGB: Pillow bicubic on the RGB tile, as read_image does
    note: str = ""

    def __call__(self, bands: np.ndarray) -> np.ndarray:
        chosen = bands[self.select]
        if self.rgb:  # as data.reader.read_image resizes an RGB image
            return resize_rgb(np.ascontiguousarray(chosen.transpose(1, 2, 0)), self.image_size)
        return to_uint8(resize_bands(chosen, self.image_size), self.band_min, self.band_max)


def band_reader(scene: Scene, info: dict[str, Any], run_dir: Path,
                bands: Sequence[str | int] | None = None,
                stretch: tuple[float, float] | None = None) -> BandReader:
    """The :class:`BandReader` of ``scene`` for a run (``info`` of ``load_run_network``).
    ``bands`` (``--bands``) picks the scene's bands for the run's, by index or description. A
    scene that cannot be matched is a :class:`DataError` naming the scene, its bands and type,
    the run's bands and the flag that fixes it."""
    channels, run_bands = int(info["channels"]), info.get("bands")
    band_min, band_max = info.get("band_min"), info.get("band_max")
    rgb_run = reads_rgb(channels, run_bands, band_min)
    wanted = (", ".join(map(str, run_bands)) if run_bands else
              "R, G, B" if rgb_run else f"{channels} bands")
    problem = (f"scene {scene.path} has {scene.describe()}, but the run {run_dir} takes "
               f"{channels} bands ({wanted})")
    fix = (f"; pass --bands with {channels} of the scene's bands (0-based indices or band "
           "descriptions) in the run's order")
    if bands is not None:
        if len(bands) != channels:
            raise DataError(f"{problem}: --bands names {len(bands)} bands{fix}")
        try:
            select = select_bands(scene.names, scene.count, bands, str(scene.path), "--bands")
        except DataError as exc:
            raise DataError(f"{problem}: {exc}") from None
    elif rgb_run:
        found = scene.rgb_indices()
        if found is not None:
            select = found
        elif scene.count in (3, 4):  # RGB or RGBA without colour interpretation
            select = [0, 1, 2]
        elif scene.count == 1:  # grayscale, as read_image makes it RGB
            select = [0, 0, 0]
        else:
            raise DataError(problem + fix)
    elif run_bands is not None:
        try:
            select = select_bands(scene.names, scene.count, run_bands, str(scene.path))
        except DataError as exc:
            raise DataError(f"{problem}: {exc}{fix}") from None
    elif scene.count == channels:
        select = list(range(channels))
    else:
        raise DataError(problem + fix)
    size = int(info["image_size"])
    if band_min is not None:
        return BandReader(select, size, list(band_min), list(band_max), rgb=False,
                          note="values scaled with the run's recorded band_min/band_max")
    if scene.dtype == np.uint8:
        return BandReader(select, size, rgb=channels == 3, note="8-bit values as they are")
    low, high = stretch or DEFAULT_STRETCH
    lo, hi = stretch_range(scene, select, low, high)
    note = (f"{scene.dtype} scene stretched to 8 bits per band at its {low:g}th-{high:g}th "
            f"percentiles (min {_fmt(lo)}, max {_fmt(hi)}); the run's images were 8-bit")
    log.info("map: %s", note)
    return BandReader(select, size, lo, hi, rgb=False, note=note)


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def stretch_range(scene: Scene, select: list[int], low: float, high: float
                  ) -> tuple[list[float], list[float]]:
    """Per chosen band, the ``low``/``high`` percentiles of the scene's valid pixels (from a
    decimated read of at most 1024 px a side)."""
    if not 0 <= low < high <= 100:
        raise AerosslError(f"--stretch needs 0 <= LOW < HIGH <= 100, got {low} {high}")
    if not isinstance(scene, Raster):
        raise DataError(f"{scene.path}: cannot stretch an image decoded by Pillow")
    small = scene.overview()
    lo, hi = [], []
    for b in select:
        band = np.ma.masked_invalid(small[b].astype(np.float64)).compressed()
        if band.size == 0:
            raise DataError(f"{scene.path}: band {b} holds no valid pixels to stretch")
        p = np.percentile(band, [low, high])
        lo.append(float(p[0]))
        hi.append(float(p[1]) if p[1] > p[0] else float(p[0]) + 1.0)
    return lo, hi


def nodata_fraction(valid: np.ndarray) -> float:
    """Share of a tile's pixels that hold no data."""
    return 1.0 - float(valid.mean())


# ----------------------------------------------------------------------------- native size


def native_tile_size(cfg: Any, run_dir: Path, sample: int = 64) -> int:
    """Median native size (``sqrt(h * w)``, px) of up to ``sample`` of the run's images read
    from their headers: the scale the run learnt, the default tile size of a map."""
    from aerossl.data.raster import raster_size
    from aerossl.engine.data import read_dataset

    try:
        dataset, _ = read_dataset(cfg.data)
    except AerosslError as exc:
        raise DataError(f"cannot find the training images of {run_dir} ({exc}) to derive the "
                        "tile size; give it with --tile-size or --tile-m") from None
    n = len(dataset.files)
    picks = sorted({int(i) for i in np.linspace(0, n - 1, min(sample, n))}) if n else []
    sizes = []
    for i in picks:
        path = dataset.root / dataset.files[i]
        try:
            if path.suffix.lower() in TIFF_EXTENSIONS:
                h, w = raster_size(path)
            else:
                with Image.open(path) as img:
                    w, h = img.size
        except Exception:  # an unreadable file says nothing about the scale
            continue
        sizes.append(math.sqrt(h * w))
    if not sizes:
        raise DataError(f"no readable training images of {run_dir} under {dataset.root} to "
                        "derive the tile size; give it with --tile-size or --tile-m")
    return round(float(np.median(sizes)))
