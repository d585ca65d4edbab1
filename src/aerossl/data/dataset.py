"""The dataset a data config names: the built-in formats registered, ``demo`` roots resolved,
the images and labels read in the form of the config's task.

This sits above every format module (it imports them, which registers them); the registry
itself, :mod:`aerossl.data.formats`, imports none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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


def recorded_root(cfg: DataConfig, source: Path) -> dict[str, str]:
    """The ``data`` keys (root, and manifest when one was named) a run folder records; none
    for the bundled demo data."""
    return {} if cfg.root in DEMO_ROOTS else format_for(cfg).recorded_root(cfg, source)
