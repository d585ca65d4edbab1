"""8-bit RGB images: which files count as images, decoding one to ``H x W x 3`` and resizing
it the one way every reader does (Pillow's antialiased bicubic).

Multi-band images are :mod:`aerossl.data.multispectral`'s; :func:`aerossl.data.reader.read_image`
chooses between the two.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from aerossl.errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
"""Lower-case file extensions treated as images (matched case-insensitively)."""

TIFF_EXTENSIONS: frozenset[str] = frozenset({".tif", ".tiff"})

# Pillow raises DecompressionBombError above twice its MAX_IMAGE_PIXELS; apply the same limit
# to TIFFs decoded by rasterio (GDAL), which has no such protection of its own.
_BOMB_FACTOR = 2

_HIGH_BIT_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


def is_image_file(name: str) -> bool:
    """True when ``name`` has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def resize_rgb(hwc: np.ndarray, size: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 image as ``3 x size x size`` (Pillow's antialiased bicubic; no
    resampling when it already has that size)."""
    if hwc.shape[0] != size or hwc.shape[1] != size:
        hwc = np.asarray(Image.fromarray(hwc, mode="RGB").resize((size, size),
                                                                  Image.Resampling.BICUBIC))
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def decode_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` to an ``H x W x 3`` uint8 array or raise :class:`DataError`."""
    tiff_problem = ""
    if path.suffix.lower() in TIFF_EXTENSIONS:
        try:
            arr = _read_tiff(path)
        except DataError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # any other rasterio failure: try Pillow instead
            tiff_problem = f"rasterio: {type(exc).__name__}: {exc}; "
        else:
            if arr is not None:
                return arr
    try:
        return _read_pillow(path)
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise DataError(
            f"{path}: cannot decode image ({tiff_problem}{type(exc).__name__}: {exc}); "
            "the file is corrupt or not a supported image - re-download, convert or delete it"
        ) from exc


def _read_tiff(path: Path) -> np.ndarray | None:
    """Read a TIFF with rasterio; ``None`` when it is not plain gray/RGB(A)."""
    from aerossl.data.raster import open_raster

    try:
        raster = open_raster(path)
    except DataError as exc:  # GDAL cannot open it: let Pillow try
        raise RuntimeError(str(exc)) from None
    with raster:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and raster.height * raster.width > _BOMB_FACTOR * limit:
            raise DataError(
                f"{path}: TIFF of shape ({raster.height}, {raster.width}) is too large to "
                f"decode safely (more than {_BOMB_FACTOR * limit} pixels); crop or downsample "
                "it first"
            )
        if raster.dtype != np.uint8:
            raise DataError(
                f"{path}: TIFF has {raster.describe()}; the RGB reader needs 8-bit images - "
                "multispectral/16-bit data is read when the dataset's first image is such a "
                "file or data.bands is set"
            )
        if raster.count not in (1, 3, 4):
            return None
        arr = raster.read_all()
    if raster.count == 1:
        return np.repeat(arr[0][..., None], 3, axis=2)
    return np.ascontiguousarray(arr[:3].transpose(1, 2, 0))


def _read_pillow(path: Path) -> np.ndarray:
    """Read any Pillow-supported image and convert it to RGB."""
    with warnings.catch_warnings():
        # Palette images with transparency are converted via RGBA below; keep the
        # DecompressionBombWarning (and error) as Pillow issues them.
        warnings.filterwarnings("ignore", message="Palette images with Transparency")
        with Image.open(path) as img:
            img.load()
            if img.mode in _HIGH_BIT_MODES:
                raise DataError(
                    f"{path}: image mode {img.mode} (16-bit or float) is not supported by the "
                    "RGB reader - convert it to 8-bit RGB"
                )
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
