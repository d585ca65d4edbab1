"""Labelled / unlabelled / test splits of a folder dataset, drawn by seed or read from files.

Protocol (as in FixMatch): the test images are held out; the unlabelled set is every
non-test image (its labels are hidden) and therefore includes the labelled images.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from aerossl.data.formats import FolderDataset
from aerossl.errors import DataError, suggest

logger = logging.getLogger("aerossl")

SPLIT_FILE_NAMES = {"labeled": "labeled.txt", "unlabeled": "unlabeled.txt", "test": "test.txt"}

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(eq=False)
class Split:
    """Sorted index arrays (int64) into a dataset's ``files``."""

    labeled: np.ndarray
    unlabeled: np.ndarray
    test: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("labeled", "unlabeled", "test")
        )


def _sorted_idx(values: Any) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64).reshape(-1))


def _check_labels(labels: np.ndarray, classes: list[str]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(
            f"labels must lie in [0, {len(classes)}) for {len(classes)} classes, "
            f"got [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64, copy=False)


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")


def stratified_split(
    labels: np.ndarray,
    classes: list[str],
    test_fraction: float = 0.5,
    labels_per_class: int | None = 4,
    seed: int = 0,
) -> Split:
    """Seeded stratified split.

    Per class (in class order): shuffle with ``np.random.default_rng(seed)``, take
    ``round(test_fraction * n)`` images as test and the rest as train; the first
    ``labels_per_class`` shuffled train images are labelled (all when ``None``), so for one
    seed a smaller labelled set is a subset of a larger one. Unlabelled = the whole train part.
    """
    labels = _check_labels(labels, classes)
    _check_fraction(test_fraction)
    if labels_per_class is not None and labels_per_class < 1:
        raise DataError(f"labels_per_class must be >= 1 or None, got {labels_per_class}")
    rng = np.random.default_rng(seed)
    labeled: list[np.ndarray] = []
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c, name in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(test_fraction * len(idx))
        class_test, class_train = idx[:n_test], idx[n_test:]
        if labels_per_class is not None and len(class_train) < labels_per_class:
            raise DataError(
                f"class '{name}' has {len(idx)} images, {len(class_train)} of them in the "
                f"train part (test_fraction={test_fraction}), fewer than "
                f"labels_per_class={labels_per_class}; lower labels_per_class or "
                "test_fraction, or add images"
            )
        k = len(class_train) if labels_per_class is None else labels_per_class
        labeled.append(class_train[:k])
        train.append(class_train)
        test.append(class_test)
    return Split(
        labeled=_sorted_idx(np.concatenate(labeled) if labeled else []),
        unlabeled=_sorted_idx(np.concatenate(train) if train else []),
        test=_sorted_idx(np.concatenate(test) if test else []),
    )


def _inside(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (POSIX) when it lies inside it, else None."""
    if path == root or not path.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return PurePosixPath(*Path(path[len(root.rstrip(os.sep)) + 1:]).parts).as_posix()


def _locate(name: str, bases: list[Path], root: str, index: dict[str, int]) -> int | None:
    """Index of the image ``name`` is, read relative to each of ``bases`` in turn (or as an
    absolute path), or None."""
    if "\x00" in name:  # no path has a NUL byte (os.path would raise ValueError)
        return None
    candidates = [name] if os.path.isabs(name) else [os.path.join(b, name) for b in bases]
    for cand in candidates:
        try:
            fulls = (os.path.normpath(os.path.abspath(cand)), os.path.realpath(cand))
        except (OSError, ValueError):  # e.g. a path too long for the system
            continue
        for full in fulls:
            rel = _inside(full, root)
            if rel is not None and rel in index:
                return index[rel]
    return None


def _class_of(token: str, classes: list[str], where: str) -> int:
    """A split file's label: a class index (sorted folder order) or a class name."""
    if re.fullmatch(r"[+-]?\d+", token):
        k = int(token)
        if not 0 <= k < len(classes):
            raise DataError(f"{where}: label {k} is not a class index; the {len(classes)} "
                            f"classes (sorted folder order) are 0..{len(classes) - 1}")
        return k
    if token in classes:
        return classes.index(token)
    raise DataError(f"{where}: label '{token}' is neither a class index nor a class name"
                    f"{suggest(token, classes)} (classes: {', '.join(classes[:10])}"
                    f"{' ...' if len(classes) > 10 else ''})")


def _check_label(i: int, k: int, dataset: FolderDataset, where: str, rel: str) -> None:
    """A line's label must agree with the image's folder (multi-label: be one of its labels)."""
    labels = np.asarray(dataset.labels)
    agrees = bool(labels[i, k]) if labels.ndim == 2 else int(labels[i]) == k
    if not agrees:
        folder = (", ".join(dataset.classes[j] for j in np.flatnonzero(labels[i]))
                  if labels.ndim == 2 else f"{int(labels[i])} '{dataset.classes[labels[i]]}'")
        raise DataError(f"{where}: label {k} '{dataset.classes[k]}' disagrees with the image "
                        f"'{rel}', whose class (from its folder) is {folder}; fix the label "
                        "or the path")


def _read_names(names_file: str | Path, dataset: FolderDataset) -> tuple[list[int], dict[int, int]]:
    """Dataset indices named in ``names_file`` (in file order) and their line numbers.

    A line is ``path`` or ``path label``. The path is read relative to the dataset root, the
    split file's folder or the working directory (the first that names an image of the
    dataset), or absolute inside the root; the optional label (a class index in sorted folder
    order, or a class name) must agree with the image's folder.
    """
    names_file = Path(names_file)
    try:
        text = names_file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{names_file}: cannot read split file ({exc}); check the path") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{names_file}: split file is not UTF-8 text ({exc})") from exc
    index = {f: i for i, f in enumerate(dataset.files)}
    root = os.path.normpath(os.path.abspath(dataset.root))
    bases = [Path(root), names_file.parent.absolute(), Path.cwd()]
    found: list[int] = []
    lines: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{names_file}:{lineno}"
        name, label = line.replace("\\", "/"), None
        i = _locate(name, bases, root, index)
        if i is None and len(line.split()) > 1:  # 'path label'
            path_part, label = line.rsplit(None, 1)
            name = path_part.replace("\\", "/")
            i = _locate(name, bases, root, index)
        if i is None:
            _not_found(where, name, dataset, index)
        assert i is not None
        if label is not None:
            _check_label(i, _class_of(label, dataset.classes, where), dataset, where,
                         dataset.files[i])
        if i in lines:
            logger.warning(
                "%s: '%s' is listed twice (first on line %d); ignoring the repeat",
                where,
                dataset.files[i],
                lines[i],
            )
            continue
        lines[i] = lineno
        found.append(i)
    if not found:
        raise DataError(f"{names_file}: split file names no images; add one path per line")
    return found, lines


def _not_found(where: str, name: str, dataset: FolderDataset, index: dict[str, int]) -> None:
    """Raise the DataError for a path that names no image of the dataset."""
    if name.startswith("/") or _WINDOWS_DRIVE.match(name):
        raise DataError(
            f"{where}: '{name}' is an absolute path outside the dataset root {dataset.root}; "
            "write paths relative to the root (e.g. 'class/image.jpg'), to the split file's "
            "folder or to the working directory"
        )
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise DataError(
            f"{where}: '{name}' goes outside the dataset root {dataset.root} ('..') and names "
            "no image of it; write paths relative to the root without '..'"
        )
    hint = ""
    for k in range(1, len(parts) - 1):  # a path with extra leading folders
        if "/".join(parts[k:]) in index:
            hint = f" (did you mean '{'/'.join(parts[k:])}'?)"
            break
    raise DataError(
        f"{where}: '{name}' is not an image of the dataset at {dataset.root}{hint}; fix the "
        "path (relative to the root, e.g. 'class/image.jpg', to the split file's folder or to "
        "the working directory) or remove the line"
    )


def read_split_files(
    dataset: FolderDataset, labeled_names_file: str | Path, test_names_file: str | Path | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices of the images a labelled file (and a test file, if given: else None) names;
    an image in both files is a DataError naming both lines."""
    labeled, labeled_lines = _read_names(labeled_names_file, dataset)
    if test_names_file is None:
        return labeled, None
    test, test_lines = _read_names(test_names_file, dataset)
    both = sorted(set(labeled_lines) & set(test_lines))
    if both:
        i = both[0]
        raise DataError(
            f"{labeled_names_file}:{labeled_lines[i]}: '{dataset.files[i]}' is also in the "
            f"test file {test_names_file}:{test_lines[i]} ({len(both)} images are in "
            "both); a labelled image must not be a test image - remove it from one file"
        )
    return labeled, _sorted_idx(test)


def split_from_files(
    dataset: FolderDataset,
    labeled_names_file: str | Path,
    test_names_file: str | Path | None = None,
    test_fraction: float = 0.5,
    seed: int = 0,
) -> Split:
    """Split with the labelled images (and optionally the test images) named in text files.

    One path per line, relative to ``dataset.root``, to the file's folder or to the working
    directory, optionally followed by a label (class index or name) that must agree with the
    folder (blank lines and ``#`` comments ignored, backslashes accepted). Without a test
    file the test images are drawn per class with the seed: ``round(test_fraction *
    n_class)`` images (at most all) from those not labelled. Unlabelled = every non-test image.
    """
    _check_fraction(test_fraction)
    labeled, test_idx = read_split_files(dataset, labeled_names_file, test_names_file)
    n = len(dataset.files)
    if test_idx is None:
        rng = np.random.default_rng(seed)
        is_labeled = np.zeros(n, dtype=bool)
        is_labeled[labeled] = True
        picks: list[np.ndarray] = []
        for c in range(len(dataset.classes)):
            members = np.flatnonzero(dataset.labels == c)
            pool = rng.permutation(members[~is_labeled[members]])
            n_test = min(round(test_fraction * len(members)), len(pool))
            picks.append(pool[:n_test])
        test_idx = _sorted_idx(np.concatenate(picks) if picks else [])
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    labeled_idx = _sorted_idx(labeled)
    missing = [
        dataset.classes[c]
        for c in range(len(dataset.classes))
        if not np.any(dataset.labels[labeled_idx] == c)
    ]
    if missing:
        logger.warning(
            "%s: no labelled images for %d classes: %s",
            labeled_names_file,
            len(missing),
            ", ".join(missing[:10]),
        )
    return Split(
        labeled=labeled_idx,
        unlabeled=np.flatnonzero(~is_test).astype(np.int64),
        test=test_idx,
    )


def write_split(split: Split, dataset: FolderDataset, run_dir: str | Path) -> dict[str, Any]:
    """Write ``run_dir/split/{labeled,unlabeled,test}.txt`` and return a summary dict.

    The files list relative paths (with a ``#`` header) and can be passed back to
    :func:`split_from_files`. The summary holds total and per-class counts and the paths.
    """
    out_dir = Path(run_dir) / "split"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out_dir}: cannot create split folder ({exc})") from exc
    summary: dict[str, Any] = {
        "dataset_root": str(dataset.root),
        "num_images": len(dataset.files),
        "classes": list(dataset.classes),
        "counts": {},
        "per_class": {name: {} for name in dataset.classes},
        "files": {},
    }
    for part, filename in SPLIT_FILE_NAMES.items():
        idx = np.asarray(getattr(split, part), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(dataset.files)):
            raise DataError(
                f"split.{part} has indices outside the dataset of {len(dataset)} images"
            )
        path = out_dir / filename
        header = f"# {part} images ({idx.size}) of the dataset at {dataset.root}\n"
        body = "".join(dataset.files[i] + "\n" for i in idx)
        path.write_text(header + body, encoding="utf-8")
        summary["counts"][part] = int(idx.size)
        labels = dataset.labels[idx]
        counts = (labels.sum(axis=0) if labels.ndim == 2  # multi-label: positives per class
                  else np.bincount(labels, minlength=len(dataset.classes)))
        for name, count in zip(dataset.classes, counts, strict=True):
            summary["per_class"][name][part] = int(count)
        summary["files"][part] = str(path)
    return summary


def split_from_pool_file(
    dataset: FolderDataset,
    train_pool_file: str | Path,
    test_names_file: str | Path | None = None,
    labels_per_class: int | None = 4,
    seed: int = 0,
) -> Split:
    """Split whose labelled images are drawn from a train pool named in a file.

    The pool file (and the test file) take the same lines as :func:`split_from_files`, e.g. the
    GeoPython workshop's ``UCM_train.txt`` (``path label``). Per class (in class order) the
    pool's images are shuffled with ``np.random.default_rng(seed)`` and the first
    ``labels_per_class`` are labelled (all when ``None``), so for one seed a smaller labelled
    set is a subset of a larger one. Test = the test file's images, or without one every
    image not in the pool. Unlabelled = every non-test image.
    """
    if labels_per_class is not None and labels_per_class < 1:
        raise DataError(f"labels_per_class must be >= 1 or None, got {labels_per_class}")
    pool, test_idx = read_split_files(dataset, train_pool_file, test_names_file)
    n = len(dataset.files)
    in_pool = np.zeros(n, dtype=bool)
    in_pool[pool] = True
    if test_idx is None:
        test_idx = np.flatnonzero(~in_pool).astype(np.int64)
    rng = np.random.default_rng(seed)
    labeled: list[np.ndarray] = []
    for c, name in enumerate(dataset.classes):
        members = np.flatnonzero(in_pool & (np.asarray(dataset.labels) == c))
        if labels_per_class is not None and len(members) < labels_per_class:
            raise DataError(
                f"{train_pool_file}: class '{name}' has {len(members)} images in the train "
                f"pool, fewer than labels_per_class={labels_per_class}; lower "
                "data.labels_per_class or add images to the pool"
            )
        k = len(members) if labels_per_class is None else labels_per_class
        labeled.append(rng.permutation(members)[:k])
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    return Split(
        labeled=_sorted_idx(np.concatenate(labeled) if labeled else []),
        unlabeled=np.flatnonzero(~is_test).astype(np.int64),
        test=_sorted_idx(test_idx),
    )
