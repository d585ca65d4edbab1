"""Multi-label scene datasets: a CSV manifest of images and their label sets, and their splits.

Manifest format (UTF-8, header row, extra columns ignored)::

    path,labels
    images/scene001.jpg,forest;river
    /data/tiles/scene002.tif,buildings

``path`` is relative to the CSV file's folder, or absolute; ``labels`` lists the image's labels
separated by ``;`` (surrounding spaces ignored). The classes are the sorted union of all labels.
Errors name the manifest and the line.

Split (:func:`multilabel_split`): a seeded random ``test_fraction`` of the images is the test
set; the rest is the unlabelled set. The labelled set is drawn from it greedily: classes are
visited from the rarest (fewest positives in the train part) up, and each takes shuffled images
that show it until it has at least ``labels_per_class`` positives in the labelled set (images
taken for earlier classes count); ``num_labeled`` then tops the set up with random train images
(or, without ``labels_per_class``, draws it at random).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aerossl.data.bigearthnet import scan_bigearthnet
from aerossl.data.decode import IMAGE_EXTENSIONS, is_image_file
from aerossl.data.formats import DataFormat, FolderDataset, register_format
from aerossl.data.splits import Split, _check_fraction, _sorted_idx, read_split_files
from aerossl.errors import DataError

if TYPE_CHECKING:
    from aerossl.config import DataConfig

logger = logging.getLogger("aerossl")

LABEL_SEPARATOR = ";"
_DEMO_MANIFEST = Path(__file__).resolve().parent / "demo" / "ucmerced_mini_multilabel.csv"


def demo_multilabel_manifest() -> Path:
    """Manifest of the demo dataset with multi-label scenes (class plus land-cover labels)."""
    if not _DEMO_MANIFEST.is_file():
        raise DataError(f"{_DEMO_MANIFEST}: demo manifest is missing from the installation; "
                        "reinstall aerossl or regenerate it with tools/make_demo_multilabel.py")
    return _DEMO_MANIFEST


@dataclass(eq=False)
class MultiLabelDataset(FolderDataset):
    """Images with a set of labels each.

    ``labels`` is a ``uint8`` multi-hot matrix ``(N, C)`` over ``classes``; ``files`` are POSIX
    paths relative to ``root`` (for a manifest: its folder, or the deepest folder holding it and
    every image); ``source`` is the
    manifest the dataset was read from (None when built from lists) and ``lines`` the manifest
    line of each image.
    """

    source: Path | None = None
    lines: list[int] | None = None

    @classmethod
    def from_label_lists(
        cls,
        root: str | Path,
        files: Sequence[str],
        label_lists: Sequence[Sequence[str]],
        classes: Sequence[str] | None = None,
        source: Path | None = None,
    ) -> MultiLabelDataset:
        """A dataset from image paths (relative to ``root``) and each image's label names.

        The classes are the sorted union of the labels unless ``classes`` fixes their order;
        an image without labels, or with a label outside ``classes``, is a DataError.
        """
        if len(files) != len(label_lists):
            raise DataError(f"{len(files)} files but {len(label_lists)} label lists")
        if not files:
            raise DataError(f"{source or root}: no images listed")
        if classes is None:
            classes = sorted({name for names in label_lists for name in names})
        index = {name: i for i, name in enumerate(classes)}
        labels = np.zeros((len(files), len(classes)), dtype=np.uint8)
        for i, names in enumerate(label_lists):
            if not names:
                raise DataError(f"{files[i]}: image has no labels")
            for name in names:
                if name not in index:
                    from aerossl.errors import suggest

                    raise DataError(f"{files[i]}: unknown label '{name}'"
                                    f"{suggest(name, list(classes))} (classes: "
                                    f"{', '.join(classes)})")
                labels[i, index[name]] = 1
        return cls(root=Path(root), files=list(files), labels=labels, classes=list(classes),
                   source=source)


def _read_rows(manifest: Path) -> list[tuple[int, str, str]]:
    """(line number, path, labels) of each data row; checks the header."""
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{manifest}: cannot read the manifest ({exc}); check the path") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{manifest}: manifest is not UTF-8 text ({exc})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise DataError(f"{manifest}: manifest is empty; write a header 'path,labels' and "
                            "one image per line")
        columns = [cell.strip().lower() for cell in header]
        if "path" not in columns or "labels" not in columns:
            raise DataError(f"{manifest}:{reader.line_num}: header must name the columns 'path' "
                            f"and 'labels' (got {','.join(header)!r}), e.g. 'path,labels'")
        ip, il = columns.index("path"), columns.index("labels")
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(ip, il):
                raise DataError(f"{manifest}:{reader.line_num}: expected {len(columns)} columns "
                                f"({','.join(columns)}), got {len(row)}: {','.join(row)!r}")
            rows.append((reader.line_num, row[ip].strip(), row[il]))
    except csv.Error as exc:
        raise DataError(f"{manifest}:{reader.line_num}: not valid CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{manifest}: manifest lists no images; add one 'path,labels' line per "
                        "image")
    return rows


def read_manifest(manifest: str | Path) -> MultiLabelDataset:
    """Read a ``path,labels`` CSV manifest (see the module docstring); every image must exist.

    A repeated path with the same labels is ignored with a warning; with other labels it is an
    error. A label listed twice for one image counts once.
    """
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise DataError(f"{manifest}: manifest file does not exist; check data.root / "
                        "data.manifest")
    manifest = manifest.resolve()
    base = manifest.parent
    paths: list[str] = []
    label_lists: list[list[str]] = []
    lines: list[int] = []
    first: dict[str, tuple[int, list[str]]] = {}
    missing: list[str] = []
    for lineno, raw_path, raw_labels in _read_rows(manifest):
        where = f"{manifest}:{lineno}"
        if not raw_path:
            raise DataError(f"{where}: empty path")
        path = os.path.normpath(os.path.join(base, raw_path.replace("\\", "/")))
        names = sorted({n.strip() for n in raw_labels.split(LABEL_SEPARATOR) if n.strip()})
        if not names:
            raise DataError(f"{where}: '{raw_path}' has no labels; list them separated by "
                            f"'{LABEL_SEPARATOR}' (e.g. 'forest;river') or remove the line")
        if path in first:
            line, earlier = first[path]
            if earlier != names:
                raise DataError(f"{where}: '{raw_path}' is listed again with other labels "
                                f"({';'.join(names)} here, {';'.join(earlier)} on line {line}); "
                                "keep one line per image")
            logger.warning("%s: '%s' is listed twice (first on line %d); ignoring the repeat",
                           where, raw_path, line)
            continue
        if not is_image_file(path):
            exts = " ".join(sorted(IMAGE_EXTENSIONS))
            raise DataError(f"{where}: '{raw_path}' is not an image file ({exts})")
        if not os.path.isfile(path):
            missing.append(f"{where}: '{raw_path}' does not exist ({path})")
        first[path] = (lineno, names)
        paths.append(path)
        label_lists.append(names)
        lines.append(lineno)
    if missing:
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DataError(f"{len(missing)} images listed in {manifest} do not exist; fix the "
                        "paths (relative to the manifest's folder) or remove the lines:\n  "
                        + "\n  ".join(missing[:10]) + more)
    # the manifest's folder, or above it when images lie elsewhere: files are then named as in
    # the manifest, which is how split files (data.labeled_names_file) name them too
    root = Path(os.path.commonpath([str(base), *(os.path.dirname(p) for p in paths)]))
    files = [Path(os.path.relpath(p, root)).as_posix() for p in paths]
    dataset = MultiLabelDataset.from_label_lists(root, files, label_lists, source=manifest)
    dataset.lines = lines
    return dataset


def multilabel_split(
    labels: np.ndarray,
    classes: Sequence[str],
    test_fraction: float = 0.5,
    labels_per_class: int | None = 4,
    num_labeled: int | None = None,
    seed: int = 0,
) -> Split:
    """Seeded split of a multi-hot ``(N, C)`` label matrix (rule in the module docstring)."""
    labels = np.asarray(labels) > 0
    _check_fraction(test_fraction)
    n = len(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = round(test_fraction * n)
    test, train = order[:n_test], order[n_test:]
    if labels_per_class is None and num_labeled is None:
        return Split(_sorted_idx(train), _sorted_idx(train), _sorted_idx(test))
    chosen = np.zeros(n, dtype=bool)
    if labels_per_class is not None:
        counts = labels[train].sum(axis=0)
        for c in np.argsort(counts, kind="stable"):
            if counts[c] < labels_per_class:
                raise DataError(
                    f"class '{classes[c]}' has {int(labels[:, c].sum())} images, {int(counts[c])}"
                    f" of them in the train part (test_fraction={test_fraction}), fewer than "
                    f"labels_per_class={labels_per_class}; lower labels_per_class or "
                    "test_fraction, or add images")
            have = int(labels[chosen, c].sum())
            for i in train[labels[train, c]]:
                if have >= labels_per_class:
                    break
                if not chosen[i]:
                    chosen[i] = True
                    have += 1
    if num_labeled is not None:
        if num_labeled > len(train):
            raise DataError(f"num_labeled={num_labeled} exceeds the {len(train)} train images")
        if chosen.sum() > num_labeled:
            raise DataError(f"labels_per_class={labels_per_class} already needs "
                            f"{int(chosen.sum())} labelled images, more than "
                            f"num_labeled={num_labeled}; raise num_labeled or lower "
                            "labels_per_class")
        rest = train[~chosen[train]]
        chosen[rest[: num_labeled - int(chosen.sum())]] = True
    return Split(np.flatnonzero(chosen).astype(np.int64), _sorted_idx(train), _sorted_idx(test))


def multilabel_split_from_files(
    dataset: MultiLabelDataset,
    labeled_names_file: str | Path,
    test_names_file: str | Path | None = None,
    test_fraction: float = 0.5,
    seed: int = 0,
) -> Split:
    """Split with the labelled (and optionally test) images named in text files, one path per
    line relative to ``dataset.root``; without a test file ``round(test_fraction * N)`` of the
    images not labelled are drawn as test. Unlabelled = every non-test image."""
    _check_fraction(test_fraction)
    labeled, test_idx = read_split_files(dataset, labeled_names_file, test_names_file)
    n = len(dataset.files)
    if test_idx is None:
        pool = np.setdiff1d(np.arange(n), labeled)
        pool = np.random.default_rng(seed).permutation(pool)
        test_idx = _sorted_idx(pool[: min(round(test_fraction * n), len(pool))])
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    labeled_idx = _sorted_idx(labeled)
    absent = [c for c, k in zip(dataset.classes, dataset.labels[labeled_idx].sum(0), strict=True)
              if k == 0]
    if absent:
        logger.warning("%s: no labelled images for %d classes: %s", labeled_names_file,
                       len(absent), ", ".join(absent[:10]))
    return Split(labeled_idx, np.flatnonzero(~is_test).astype(np.int64), test_idx)


def as_multiclass(dataset: MultiLabelDataset) -> FolderDataset:
    """The dataset with one class per image, for a manifest used with ``task: multiclass``
    (every image must have exactly one label)."""
    counts = dataset.labels.sum(axis=1)
    bad = np.flatnonzero(counts != 1)
    if len(bad):
        i = int(bad[0])
        names = ";".join(c for c, v in zip(dataset.classes, dataset.labels[i], strict=True) if v)
        where = dataset.source or dataset.root
        if dataset.lines is not None:
            where = f"{where}:{dataset.lines[i]}"
        more = f" ({len(bad) - 1} more images have not exactly one)" if len(bad) > 1 else ""
        raise DataError(f"{where}: '{dataset.files[i]}' has {int(counts[i])} labels ({names})"
                        f"{more}; a multiclass task needs one label per image - set "
                        "data.task: multilabel")
    return FolderDataset(root=dataset.root, files=dataset.files,
                         labels=dataset.labels.argmax(axis=1).astype(np.int64),
                         classes=dataset.classes, skipped=dataset.skipped)


def as_multilabel(dataset: FolderDataset) -> MultiLabelDataset:
    """A class-folder dataset as a multi-label one (each image labelled with its class)."""
    labels = np.zeros((len(dataset.files), len(dataset.classes)), dtype=np.uint8)
    labels[np.arange(len(dataset.files)), dataset.labels] = 1
    return MultiLabelDataset(root=dataset.root, files=dataset.files, labels=labels,
                             classes=dataset.classes, skipped=dataset.skipped)


# ---------------------------------------------------------------------------- the formats


@register_format
class Manifest(DataFormat):
    """A CSV manifest ``path,labels``: chosen by ``data.manifest`` (a file relative to
    ``data.root``), a ``.csv`` root or ``demo_multilabel``."""

    name = "manifest"
    task = "multilabel"

    def claims(self, cfg: DataConfig) -> bool:
        return cfg.is_manifest()

    def scan(self, root: Path, cfg: DataConfig) -> tuple[FolderDataset, Path]:
        dataset = read_manifest(root / cfg.manifest if cfg.manifest else root)
        assert dataset.source is not None
        return dataset, dataset.source

    def recorded_root(self, cfg: DataConfig, source: Path) -> dict[str, str]:
        if cfg.manifest is None:  # the manifest itself is the root
            return {"root": str(source)}
        return {"root": str(Path(cfg.root).expanduser().resolve()), "manifest": str(source)}


@register_format
class BigEarthNet(DataFormat):
    """``data.layout: bigearthnet``: patch folders under the root, labels from each patch's
    JSON."""

    name = "bigearthnet"
    task = "multilabel"

    def scan(self, root: Path, cfg: DataConfig) -> tuple[FolderDataset, Path]:
        patches = scan_bigearthnet(root)
        dataset = MultiLabelDataset.from_label_lists(patches.root, patches.patches,
                                                     patches.labels)
        return dataset, patches.root
