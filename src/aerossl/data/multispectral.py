"""Multi-band images into the uint8 cache: band selection, resampling and value scaling.

Design: the cache stays ``uint8`` (decode once, gather integer tensors, augment on the device,
``x / 255`` in [0, 1] as for RGB), so every augmentation, the evaluation and the export work
unchanged for any channel count. 8-bit bands are cached as they are. Other data (uint16
reflectance, float) is mapped per band with ``round(255 * clip((x - min) / (max - min)))``:

- ``scaling: percentile`` (default): ``min``/``max`` are the ``scale_percentiles`` (1st and
  99th) of each band over (up to :data:`FIT_IMAGES` of) the training images, a robust range
  that spends the 256 levels where the band's values are (quantisation step
  ``(p99 - p1) / 255`` per band);
- ``scaling: fixed``: ``[0, max_value]`` for every band (e.g. 10000 for Sentinel-2 L1C/L2A
  reflectance x 10000).

The resolved ``band_min``/``band_max`` are written to the run's config.yaml, so a resumed run
(and prediction) reads with exactly the same scaling; they enter the cache key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aerossl.data.bigearthnet import band_files, patch_band_names, read_patch
from aerossl.data.decode import decode_rgb
from aerossl.data.raster import (
    RGB_BANDS,
    open_raster,
    read_raster,
    resize_band,
    scale_to_uint8,
    select_bands,
)
from aerossl.errors import DataError

FIT_IMAGES = 64
"""Training images (evenly spaced) whose pixels give the percentile scaling."""


@dataclass(frozen=True)
class BandSpec:
    """How every image of a dataset is read: the bands its files have, those chosen, and the
    per-band value range mapped to 0..255 (None: 8-bit data, cached as is)."""

    count: int
    names: tuple[str, ...] | None
    select: tuple[int, ...]
    band_min: tuple[float, ...] | None = None
    band_max: tuple[float, ...] | None = None
    reference: str = ""

    @property
    def channels(self) -> int:
        """Channels of the cached images."""
        return len(self.select)

    @property
    def selected_names(self) -> list[str] | None:
        """Names of the chosen bands, in order (None when the files name no bands)."""
        return None if self.names is None else [self.names[i] for i in self.select]

    def cache_key(self) -> dict[str, Any]:
        """What of this spec changes the cached bytes."""
        return {"count": self.count, "select": list(self.select),
                "band_min": None if self.band_min is None else list(self.band_min),
                "band_max": None if self.band_max is None else list(self.band_max)}


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def probe(path: Path) -> tuple[int, list[str] | None, bool]:
    """Band count, band names and whether the data is 8-bit, of one image (file or patch)."""
    if path.is_dir():
        names = patch_band_names(path)
        if not names:
            raise DataError(f"{path}: no band files '{path.name}_<band>.tif' in patch folder")
        with open_raster(band_files(path)[names[0]]) as raster:
            return len(names), names, raster.dtype == np.uint8
    if _is_tiff(path):
        with open_raster(path) as raster:  # the header only
            return raster.count, raster.names, raster.dtype == np.uint8
    return 3, list(RGB_BANDS), True  # Pillow formats are read as 8-bit RGB


def read_bands(path: Path, image_size: int, spec: BandSpec) -> tuple[np.ndarray, bool]:
    """The chosen bands of one image resampled to float32 ``(C, S, S)``, and whether the
    source is 8-bit. A band layout that differs from ``spec`` is a :class:`DataError`."""
    if path.is_dir():
        names = patch_band_names(path)
        _check_count(path, len(names), spec)
        chosen = [names[i] for i in spec.select]
        raw, _ = read_patch(path, image_size, chosen)
        _, _, eight_bit = probe(path)
        return raw, eight_bit
    if _is_tiff(path):
        arr, names = read_raster(path)
    else:
        arr, names = decode_rgb(path).transpose(2, 0, 1), list(RGB_BANDS)
    _check_count(path, arr.shape[0], spec)
    if spec.names is not None and names is not None and list(names) != list(spec.names):
        raise DataError(f"{path}: bands {', '.join(names)} differ from those of the dataset's "
                        f"first image {spec.reference} ({', '.join(spec.names)})")
    return resize_bands(arr[list(spec.select)], image_size), arr.dtype == np.uint8


def resize_bands(bands: np.ndarray, size: int) -> np.ndarray:
    """``(C, H, W)`` bands resampled one by one to float32 ``(C, size, size)``."""
    return np.stack([resize_band(b, size) for b in bands])


def to_uint8(raw: np.ndarray, band_min: Sequence[float] | None,
             band_max: Sequence[float] | None) -> np.ndarray:
    """Resampled bands as ``uint8``: the recorded per-band range mapped to 0..255, or, without
    one (8-bit sources), the values rounded and clipped."""
    if band_min is None or band_max is None:
        return np.rint(np.clip(raw, 0, 255)).astype(np.uint8)
    return scale_to_uint8(raw, band_min, band_max)


def _check_count(path: Path, count: int, spec: BandSpec) -> None:
    if count != spec.count:
        raise DataError(f"{path}: image has {count} bands but the dataset's first image "
                        f"{spec.reference} has {spec.count}; every image must have the same "
                        "bands")


def read_scaled(path: Path, image_size: int, spec: BandSpec) -> np.ndarray:
    """One image as the cached ``uint8`` ``(C, S, S)`` array."""
    raw, eight_bit = read_bands(path, image_size, spec)
    if (spec.band_min is None or spec.band_max is None) and not eight_bit:
        raise DataError(f"{path}: image is not 8-bit but the dataset's first image "
                        f"{spec.reference} is; convert it, or set data.band_min/band_max")
    return to_uint8(raw, spec.band_min, spec.band_max)


def spec_for_image(
    path: Path, bands: Sequence[str | int] | None, band_min: Sequence[float] | None,
    band_max: Sequence[float] | None,
) -> BandSpec:
    """The spec to read one new image (prediction) of a multispectral run as the run read its
    training images (same bands, same recorded value range)."""
    count, names, _ = probe(path)
    select = tuple(select_bands(names, count, bands, str(path)))
    return BandSpec(count, None if names is None else tuple(names), select,
                    None if band_min is None else tuple(band_min),
                    None if band_max is None else tuple(band_max), str(path))


def resolve_band_spec(
    paths: list[Path],
    train: np.ndarray,
    image_size: int,
    bands: Sequence[str | int] | None = None,
    scaling: str = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.0),
    max_value: float = 10000.0,
    band_min: Sequence[float] | None = None,
    band_max: Sequence[float] | None = None,
) -> BandSpec | None:
    """The band layout of a dataset from its first image, and the value scaling (fitted on the
    ``train`` images for ``scaling=percentile``). None for 8-bit gray/RGB/RGBA data without
    band descriptions and no band selection: it is read by the RGB reader as before."""
    first = paths[0]
    count, names, eight_bit = probe(first)
    # 8-bit gray, RGB or RGBA files without band descriptions: the RGB reader, as before
    plain_rgb = (eight_bit and not first.is_dir() and count in (1, 3, 4)
                 and names in (None, list(RGB_BANDS)))
    if bands is None and band_min is None and plain_rgb:
        return None
    select = tuple(select_bands(names, count, bands, str(first)))
    spec = BandSpec(count, None if names is None else tuple(names), select, reference=str(first))
    if band_min is not None and band_max is not None:
        if len(band_min) != spec.channels or len(band_max) != spec.channels:
            raise DataError(f"data.band_min/band_max have {len(band_min)}/{len(band_max)} values "
                            f"but {spec.channels} bands are used")
        lo, hi = tuple(map(float, band_min)), tuple(map(float, band_max))
    elif eight_bit:
        return spec
    elif scaling == "fixed":
        lo, hi = (0.0,) * spec.channels, (float(max_value),) * spec.channels
    else:
        lo, hi = fit_percentiles(paths, train, image_size, spec, percentiles)
    bad = [i for i in range(spec.channels) if not hi[i] > lo[i]]
    if bad:
        raise DataError(f"band {bad[0]} has band_max {hi[bad[0]]} <= band_min {lo[bad[0]]}; "
                        "set data.band_min/band_max or use scaling=fixed")
    return BandSpec(spec.count, spec.names, select, lo, hi, spec.reference)


def fit_percentiles(
    paths: list[Path], train: np.ndarray, image_size: int, spec: BandSpec,
    percentiles: tuple[float, float],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band ``percentiles`` over the pixels of up to :data:`FIT_IMAGES` training images."""
    train = np.asarray(train, dtype=np.int64)
    if len(train) == 0:
        raise DataError("no training images to fit the band scaling on")
    pick = train[np.linspace(0, len(train) - 1, min(FIT_IMAGES, len(train))).round().astype(int)]
    stack = np.stack([read_bands(paths[i], image_size, spec)[0] for i in np.unique(pick)])
    pixels = stack.transpose(1, 0, 2, 3).reshape(spec.channels, -1)
    lo = np.percentile(pixels, percentiles[0], axis=1)
    hi = np.percentile(pixels, percentiles[1], axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)  # a constant band maps to 0
    return tuple(round(float(v), 4) for v in lo), tuple(round(float(v), 4) for v in hi)
