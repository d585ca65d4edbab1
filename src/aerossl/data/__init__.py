"""Data layer: image folders, decoding (RGB and multi-band), the decoded-image cache, splits,
spatiotemporal metadata and the demo set."""

from __future__ import annotations

from pathlib import Path

from aerossl.data.bigearthnet import scan_bigearthnet
from aerossl.data.cache import load_or_build_cache
from aerossl.data.decode import IMAGE_EXTENSIONS, read_image
from aerossl.data.folder import FolderDataset, scan_folder
from aerossl.data.metadata import Location, collect_metadata, encode_metadata
from aerossl.data.multispectral import BandSpec, resolve_band_spec
from aerossl.data.splits import Split, split_from_files, stratified_split, write_split
from aerossl.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "BandSpec",
    "FolderDataset",
    "Location",
    "Split",
    "collect_metadata",
    "demo_dataset_path",
    "encode_metadata",
    "load_or_build_cache",
    "read_image",
    "resolve_band_spec",
    "scan_bigearthnet",
    "scan_folder",
    "split_from_files",
    "stratified_split",
    "write_split",
]

_DEMO_DIR = Path(__file__).resolve().parent / "demo" / "ucmerced_mini"


def demo_dataset_path() -> Path:
    """Folder of the bundled demo dataset (UC Merced subset: 21 classes x 40 images, 64x64)."""
    if not _DEMO_DIR.is_dir():
        raise DataError(
            f"{_DEMO_DIR}: demo dataset is missing from the installation; reinstall aerossl "
            "or regenerate it with tools/make_demo_dataset.py"
        )
    return _DEMO_DIR
