"""Read one image file (or patch folder) the way training, ``predict`` and ``map`` all do: a
fixed-size ``uint8`` channel-first array.

8-bit RGB images (``channels=3``, no band spec) are decoded by :mod:`aerossl.data.decode`.
Multi-band images (N-band or uint16 GeoTIFFs, BigEarthNet patch folders) are read with a
:class:`~aerossl.data.multispectral.BandSpec`, which names the bands to keep and the per-band
value range mapped to 0..255.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aerossl.data.decode import decode_rgb, resize_rgb
from aerossl.data.multispectral import BandSpec, read_scaled, spec_for_image
from aerossl.errors import DataError


def read_image(
    path: str | Path, image_size: int, channels: int = 3, spec: BandSpec | None = None
) -> np.ndarray:
    """Read ``path`` as a ``uint8`` array of shape ``(channels, image_size, image_size)``.

    Without ``spec`` (``channels`` must be 3): TIFFs are read with rasterio (falling back to
    Pillow), other formats with Pillow; grayscale, RGBA, palette and CMYK images become RGB.
    With ``spec``: the chosen bands of a multi-band image (or BigEarthNet patch folder), each
    resampled to the output size and scaled to 0..255 as the spec says. Images not already
    ``image_size x image_size`` are resized with Pillow's antialiased bicubic filter.
    Raises :class:`DataError` naming the file when it cannot be decoded.
    """
    if int(image_size) != image_size or image_size < 1:
        raise DataError(f"{path}: image_size must be a positive integer, got {image_size!r}")
    path = Path(path)
    if spec is not None:
        out = read_scaled(path, int(image_size), spec)
        if out.shape[0] != channels:
            raise DataError(f"{path}: read {out.shape[0]} bands, expected {channels}")
        return out
    if channels != 3:
        raise DataError(
            f"{path}: channels={channels} is not supported without a band spec (see "
            "aerossl.data.multispectral); without one only 8-bit RGB images (channels=3) are read"
        )
    return resize_rgb(decode_rgb(path), int(image_size))


def reads_rgb(channels: int, bands: Sequence[str | int] | None,
              band_min: Sequence[float] | None) -> bool:
    """Whether a run read its images as 8-bit RGB (3 channels, no band choice, no recorded
    value range) rather than with a band spec: the one rule ``predict`` and ``map`` use to read
    new images as the run read its training images."""
    return channels == 3 and bands is None and band_min is None


def read_for_run(path: str | Path, image_size: int, channels: int,
                 bands: Sequence[str | int] | None = None,
                 band_min: Sequence[float] | None = None,
                 band_max: Sequence[float] | None = None) -> np.ndarray:
    """A new image read as a run read its training images (``channels``, ``bands`` and the
    recorded ``band_min``/``band_max`` of its config)."""
    if reads_rgb(channels, bands, band_min):
        return read_image(path, image_size)
    spec = spec_for_image(Path(path), bands, band_min, band_max)
    return read_image(path, image_size, channels, spec)
