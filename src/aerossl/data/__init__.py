"""Data layer: image folders, decoding (RGB and multi-band), the decoded-image cache, splits,
spatiotemporal metadata and the demo set."""

from __future__ import annotations

from aerossl.data.bigearthnet import scan_bigearthnet
from aerossl.data.cache import load_or_build_cache
from aerossl.data.dataset import demo_dataset_path
from aerossl.data.decode import IMAGE_EXTENSIONS
from aerossl.data.folder import scan_folder
from aerossl.data.formats import FolderDataset
from aerossl.data.location import Location
from aerossl.data.metadata import collect_metadata, encode_metadata
from aerossl.data.multispectral import BandSpec, resolve_band_spec
from aerossl.data.reader import read_image
from aerossl.data.splits import Split, split_from_files, stratified_split, write_split

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
