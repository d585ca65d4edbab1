"""Labelled / unlabelled / test splits of a folder dataset, drawn by seed or read from files.

Protocol (as in FixMatch): the test images are held out; the unlabelled set is every
non-test image (its labels are hidden) and therefore includes the labelled images.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from aerossl.data.folder import FolderDataset
from aerossl.errors import DataError

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


def _read_names(names_file: str | Path, dataset: FolderDataset) -> tuple[list[int], dict[int, int]]:
    """Dataset indices named in ``names_file`` (in file order) and their line numbers."""
    names_file = Path(names_file)
    try:
        text = names_file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{names_file}: cannot read split file ({exc}); check the path") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{names_file}: split file is not UTF-8 text ({exc})") from exc
    index = {f: i for i, f in enumerate(dataset.files)}
    found: list[int] = []
    lines: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        name = raw.strip()
        if not name or name.startswith("#"):
            continue
        where = f"{names_file}:{lineno}"
        name = name.replace("\\", "/")
        if name.startswith("/") or _WINDOWS_DRIVE.match(name):
            raise DataError(
                f"{where}: '{raw.strip()}' is an absolute path; write paths relative to the "
                f"dataset root {dataset.root} (e.g. 'class/image.jpg')"
            )
        parts = [p for p in PurePosixPath(name).parts if p != "."]
        if ".." in parts:
            raise DataError(
                f"{where}: '{raw.strip()}' goes outside the dataset root {dataset.root} "
                "('..'); write paths relative to the root without '..'"
            )
        rel = "/".join(parts)
        i = index.get(rel)
        if i is None:
            hint = ""
            if len(parts) > 2 and "/".join(parts[1:]) in index:
                hint = f" (did you mean '{'/'.join(parts[1:])}'?)"
            raise DataError(
                f"{where}: '{raw.strip()}' is not an image of the dataset at {dataset.root}"
                f"{hint}; fix the path (relative to the root, e.g. 'class/image.jpg') or "
                "remove the line"
            )
        if i in lines:
            logger.warning(
                "%s: '%s' is listed twice (first on line %d); ignoring the repeat",
                where,
                rel,
                lines[i],
            )
            continue
        lines[i] = lineno
        found.append(i)
    if not found:
        raise DataError(f"{names_file}: split file names no images; add one path per line")
    return found, lines


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

    One path per line, relative to ``dataset.root`` (blank lines and ``#`` comments ignored,
    backslashes accepted); the class comes from the folder. Without a test file the test
    images are drawn per class with the seed: ``round(test_fraction * n_class)`` images (at
    most all) from those not labelled. Unlabelled = every non-test image.
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
