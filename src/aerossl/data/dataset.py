"""The dataset a data config names: the built-in formats registered, ``demo`` roots resolved,
the images and labels read in the form of the config's task.

This sits above every format module (it imports them, which registers them); the registry
itself, :mod:`aerossl.data.formats`, imports none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aerossl.data import folder as _folder  # noqa: F401  (registers 'classes')
from aerossl.data.formats import DEMO_ROOTS, FolderDataset, TaskName, format_for
from aerossl.data.multilabel import (  # registers 'manifest' and 'bigearthnet'
    MultiLabelDataset,
    as_multiclass,
    as_multilabel,
    demo_multilabel_manifest,
)
from aerossl.errors import DataError

if TYPE_CHECKING:
    from aerossl.config import DataConfig

_DEMO_DIR = Path(__file__).resolve().parent / "demo" / "ucmerced_mini"


def demo_dataset_path() -> Path:
    """Folder of the bundled demo dataset (UC Merced subset: 21 classes x 40 images, 64x64)."""
    if not _DEMO_DIR.is_dir():
        raise DataError(
            f"{_DEMO_DIR}: demo dataset is missing from the installation; reinstall aerossl "
            "or regenerate it with tools/make_demo_dataset.py"
        )
    return _DEMO_DIR


def task_of(cfg: DataConfig) -> TaskName:
    """``data.task``, or for ``auto`` the task of the format that reads ``cfg`` (multilabel
    for a manifest or a BigEarthNet layout)."""
    return cfg.task if cfg.task != "auto" else format_for(cfg).task


def resolve_root(root: str) -> Path:
    """``'demo'`` names the embedded demo dataset (``'demo_multilabel'`` its multi-label
    manifest); anything else is a folder or manifest path."""
    if root == "demo_multilabel":
        return demo_multilabel_manifest()
    return demo_dataset_path() if root == "demo" else Path(root).expanduser()


def read_dataset(cfg: DataConfig) -> tuple[FolderDataset, Path]:
    """The images and labels a data config names, in its task's form (integer classes, or a
    multi-hot matrix for multilabel), and their source: the folder or the manifest."""
    dataset, source = format_for(cfg).scan(resolve_root(cfg.root), cfg)
    wants_multilabel = task_of(cfg) == "multilabel"
    if wants_multilabel and not isinstance(dataset, MultiLabelDataset):
        dataset = as_multilabel(dataset)
    elif not wants_multilabel and isinstance(dataset, MultiLabelDataset):
        dataset = as_multiclass(dataset)
    return dataset, source


#: the largest size ``data.image_size: auto`` picks: the pretrained EfficientNet-Lite weights'
AUTO_MAX_SIZE = 224


def auto_image_size(side: int) -> int:
    """``data.image_size: auto`` for source images whose shorter side is ``side`` pixels:
    twice that side (small satellite chips gain from upsampling for ImageNet-pretrained
    networks: EuroSAT's 64 px at 128 px, ``benchmarks/results/eurosat_usb_*.md``), rounded to
    a multiple of 32, between 32 and :data:`AUTO_MAX_SIZE`."""
    return int(min(AUTO_MAX_SIZE, max(32, 32 * int(2 * side / 32 + 0.5))))


_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


def source_side(path: Path) -> int:
    """The shorter side in pixels of one image file (its header where the format allows; a
    patch folder: its largest band file)."""
    if path.is_dir():
        sides = [source_side(p) for p in sorted(path.iterdir()) if p.suffix.lower() in
                 _RASTER_SUFFIXES]
        if not sides:
            raise DataError(f"{path}: no band files to read the image size from")
        return max(sides)
    if path.suffix.lower() in _RASTER_SUFFIXES:  # rasters: GDAL reads any band count
        from aerossl.data.raster import raster_size

        return int(min(raster_size(path)))
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(min(im.size))
    except Exception as e:
        raise DataError(f"{path}: cannot read the image size ({e})") from None


def resolve_image_size(cfg: DataConfig) -> int:
    """The size ``data.image_size: auto`` stands for: :func:`auto_image_size` of the smallest
    shorter side among the first image of every class."""
    dataset, _ = read_dataset(cfg)
    labels = np.asarray(dataset.labels)
    firsts = [0] if labels.ndim != 1 else sorted(
        int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels))
    return auto_image_size(min(source_side(dataset.path(i)) for i in firsts))


def recorded_root(cfg: DataConfig, source: Path) -> dict[str, str]:
    """The ``data`` keys (root, and manifest when one was named) a run folder records; none
    for the bundled demo data."""
    return {} if cfg.root in DEMO_ROOTS else format_for(cfg).recorded_root(cfg, source)
