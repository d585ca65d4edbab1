"""Scan an image-folder dataset: one sub-folder per class, images anywhere inside it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aerossl.data.bigearthnet import is_patch_folder
from aerossl.data.decode import IMAGE_EXTENSIONS, is_image_file
from aerossl.data.formats import DataFormat, FolderDataset, register_format
from aerossl.errors import DataError

if TYPE_CHECKING:
    from aerossl.config import DataConfig

logger = logging.getLogger("aerossl")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def walk_images(folder: Path) -> tuple[list[Path], int]:
    """Image files under ``folder`` (recursively, sorted by path, symlink loops broken) and the
    count of skipped entries: hidden files and folders' contents, non-image files.

    A BigEarthNet patch folder (``<patch>/<patch>_B02.tif`` ... or
    ``<patch>_labels_metadata.json``) is one image: its path is the folder's."""
    images: list[Path] = []
    skipped = 0
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        for name in list(dirnames):
            if _is_hidden(name):
                dirnames.remove(name)
                for _, _, hidden_files in os.walk(Path(dirpath) / name):
                    skipped += len(hidden_files)
            elif is_patch_folder(Path(dirpath) / name):
                dirnames.remove(name)
                images.append(Path(dirpath) / name)
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if not _is_hidden(name) and is_image_file(name) and path.is_file():
                images.append(path)
            else:
                skipped += 1
    images.sort(key=lambda p: p.as_posix())
    return images, skipped


def _walk_class(class_dir: Path) -> tuple[list[str], int]:
    """Image paths (relative to ``class_dir``) found recursively, and the skipped count."""
    images, skipped = walk_images(class_dir)
    return [p.relative_to(class_dir).as_posix() for p in images], skipped


def scan_folder(root: str | Path) -> FolderDataset:
    """Find the classes (sub-folders of ``root``) and their images (searched recursively).

    Hidden files and folders (name starting with '.') and non-image files are skipped and
    reported in one warning on the ``aerossl`` logger. Files and hidden folders directly in
    ``root`` (README, LICENSE, .git, ...) belong to no class and are ignored silently; loose
    images there are counted as skipped. Raises :class:`DataError` when the folder is
    missing, has no class folders, or a class folder has no images.
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise DataError(f"{root_path}: dataset folder does not exist; check the data path")
    if not root_path.is_dir():
        raise DataError(
            f"{root_path}: dataset path is not a folder; point it at a folder with one "
            "sub-folder of images per class"
        )
    root_path = root_path.resolve()
    try:
        entries = sorted(root_path.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise DataError(
            f"{root_path}: cannot list dataset folder ({exc}); check its permissions"
        ) from exc

    class_dirs = [p for p in entries if p.is_dir() and not _is_hidden(p.name)]
    loose_images = [p for p in entries if p.is_file() and is_image_file(p.name)]
    if not class_dirs:
        hint = f" (found {len(loose_images)} images directly in it)" if loose_images else ""
        raise DataError(
            f"{root_path}: no class folders found{hint}; put the images in one sub-folder "
            "per class, e.g. ROOT/forest/img1.jpg"
        )

    classes: list[str] = []
    files: list[str] = []
    labels: list[int] = []
    skipped = len(loose_images)
    for class_dir in class_dirs:
        images, class_skipped = _walk_class(class_dir)
        skipped += class_skipped
        if not images:
            exts = " ".join(sorted(IMAGE_EXTENSIONS))
            raise DataError(
                f"{class_dir}: class folder '{class_dir.name}' has no images ({exts}); "
                "add images or remove the folder"
            )
        label = len(classes)
        classes.append(class_dir.name)
        files.extend(f"{class_dir.name}/{rel}" for rel in images)
        labels.extend([label] * len(images))

    if skipped:
        logger.warning("skipped %d files under %s (hidden or not images)", skipped, root_path)
    return FolderDataset(
        root=root_path,
        files=files,
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        skipped=skipped,
    )


# ---------------------------------------------------------------------------- the format


@register_format
class ClassFolders(DataFormat):
    """``data.layout: classes``: one sub-folder of images per class (the default format)."""

    name = "classes"
    task = "multiclass"

    def scan(self, root: Path, cfg: DataConfig) -> tuple[FolderDataset, Path]:
        dataset = scan_folder(root)
        return dataset, dataset.root
