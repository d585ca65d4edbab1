"""Decoded-image cache: every image decoded once into a ``uint8`` memmap on disk.

``<cache_dir>/<key>.u8`` holds the raw ``(N, C, S, S)`` array and ``<key>.json`` its
metadata. The key hashes the dataset root, file list, each file's size and mtime, the image
size and the channel count, so any change to the data gives a new cache file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aerossl.data.cache_admin import touch
from aerossl.data.formats import FolderDataset
from aerossl.data.multispectral import BandSpec
from aerossl.data.reader import read_image
from aerossl.errors import DataError

logger = logging.getLogger("aerossl")

CACHE_FORMAT_VERSION = 1
"""Bump when the decoding or the file layout changes, to invalidate old caches."""

_MAX_REPORTED_ERRORS = 10
_REPORT_EVERY_S = 10.0  # log decoding progress this often (the bar shows only on a terminal)
_FILE_MODE = 0o644  # mkstemp makes 0600 files; let a shared cache folder be read by others


def default_cache_dir() -> Path:
    """``$AEROSSL_CACHE_DIR`` when set, else ``~/.cache/aerossl``."""
    env = os.environ.get("AEROSSL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "aerossl"


def _num_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def file_list_hash(files: list[str]) -> str:
    """sha256 of the relative file list (one path per line)."""
    return hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()


def cache_key(
    dataset: FolderDataset, image_size: int, channels: int = 3, spec: BandSpec | None = None
) -> str:
    """sha256 over format version, root, files (with size and mtime), image size, channels
    and the band spec (bands and value scaling of multi-band images)."""
    stats = []
    for rel in dataset.files:
        try:
            st = (dataset.root / rel).stat()
        except OSError as exc:
            raise DataError(
                f"{dataset.root / rel}: cannot stat image ({exc}); it was removed or is "
                "unreadable since the folder was scanned - rescan the dataset"
            ) from exc
        stats.append([rel, st.st_size, st.st_mtime_ns, *_patch_stats(dataset.root / rel)])
    payload = {
        "version": CACHE_FORMAT_VERSION,
        "resample": "pillow-bicubic",
        "root": str(dataset.root),
        "files": stats,
        "image_size": int(image_size),
        "channels": int(channels),
    }
    if spec is not None:
        payload["bands"] = spec.cache_key()
    blob = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _patch_stats(path: Path) -> list:
    """Size and mtime of the band files of a patch folder (its own mtime misses edits)."""
    if not path.is_dir():
        return []
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir())]


def load_or_build_cache(
    dataset: FolderDataset,
    image_size: int,
    cache_dir: Path | None = None,
    *,
    channels: int = 3,
    spec: BandSpec | None = None,
    num_workers: int | None = None,
    verify: bool = False,
) -> np.ndarray:
    """Return the dataset decoded to a read-only ``np.memmap`` of shape ``(N, C, S, S)``.

    The first call decodes every image (a corrupt file raises :class:`DataError` naming it)
    and writes the cache atomically; later calls with an unchanged dataset map the cached
    file. A cache whose metadata is missing or does not match is rebuilt with a warning.
    ``verify=True`` also checks the sha256 of the cached bytes (reads the whole file).
    ``spec`` reads multi-band images (see :mod:`aerossl.data.multispectral`).
    """
    n = len(dataset.files)
    if n == 0:
        raise DataError(f"{dataset.root}: dataset has no images; nothing to cache")
    if int(image_size) != image_size or image_size < 1:
        raise DataError(
            f"{dataset.root}: image_size must be a positive integer, got {image_size!r}"
        )
    image_size = int(image_size)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{cache_dir}: cannot create the image cache folder ({exc}); set AEROSSL_CACHE_DIR "
            "or pass cache_dir to a writable folder"
        ) from exc

    key = cache_key(dataset, image_size, channels, spec)
    shape = (n, channels, image_size, image_size)
    data_path = cache_dir / f"{key}.u8"
    meta_path = cache_dir / f"{key}.json"

    problem = _check_cache(data_path, meta_path, key, shape, verify)
    if problem is None:
        logger.info(
            "using cached images %s (%d images, %dx%d) for %s",
            data_path,
            n,
            image_size,
            image_size,
            dataset.root,
        )
        touch(meta_path)  # its last use, for `aerossl cache prune`
        return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)
    if problem != "absent":
        logger.warning("image cache %s is invalid (%s); rebuilding it", data_path, problem)

    _build(dataset, shape, cache_dir, data_path, meta_path, key, num_workers, spec)
    return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)


def _check_cache(
    data_path: Path, meta_path: Path, key: str, shape: tuple[int, ...], verify: bool
) -> str | None:
    """``None`` when the cache is usable, else why not (``"absent"`` when never built)."""
    data_exists = data_path.exists()
    if not meta_path.exists():
        return "metadata file missing" if data_exists else "absent"
    if not data_exists:
        return "data file missing"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable metadata: {exc}"
    if not isinstance(meta, dict):
        return "malformed metadata"
    if meta.get("key") != key or meta.get("version") != CACHE_FORMAT_VERSION:
        return "metadata for another dataset or format"
    if meta.get("dtype") != "uint8" or list(meta.get("shape", [])) != list(shape):
        return f"shape {meta.get('shape')} / dtype {meta.get('dtype')} != {list(shape)} / uint8"
    expected = int(np.prod(shape, dtype=np.int64))
    actual = data_path.stat().st_size
    if actual != expected:
        return f"data file has {actual} bytes, expected {expected}"
    if verify:
        digest = _file_sha256(data_path)
        if digest != meta.get("sha256"):
            return "checksum mismatch"
    return None


def _file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build(
    dataset: FolderDataset,
    shape: tuple[int, int, int, int],
    cache_dir: Path,
    data_path: Path,
    meta_path: Path,
    key: str,
    num_workers: int | None,
    spec: BandSpec | None = None,
) -> None:
    """Decode all images chunk by chunk into a temp file, then atomically publish data and
    metadata."""
    n, channels, image_size, _ = shape
    nbytes = int(np.prod(shape, dtype=np.int64))
    free = shutil.disk_usage(cache_dir).free
    if free < nbytes:
        raise DataError(
            f"{cache_dir}: not enough disk space for the image cache ({nbytes / 1e9:.2f} GB "
            f"needed, {free / 1e9:.2f} GB free); free space with `aerossl cache prune` or set "
            "AEROSSL_CACHE_DIR to a larger disk"
        )
    workers = num_workers or _num_workers()
    chunk = max(64, 16 * workers)
    logger.info(
        "decoding %d images from %s to %dx%d (%d threads) into %s",
        n,
        dataset.root,
        image_size,
        image_size,
        workers,
        data_path,
    )
    start = time.perf_counter()
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".u8.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    errors: list[str] = []

    def work(index: int) -> np.ndarray | str:
        try:
            return read_image(
                dataset.root / dataset.files[index], image_size, channels, spec
            )
        except DataError as exc:
            return str(exc)

    try:
        # chunks are appended with write(), not through a writable memmap: the decoded images
        # go to the page cache, never into this process's memory, so memory stays bounded by
        # one chunk whatever the dataset size
        next_report = time.perf_counter() + _REPORT_EVERY_S
        with (
            open(tmp, "wb") as fh,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aerossl-decode") as pool,
            tqdm(
                total=n,
                desc="decoding images",
                unit="img",
                disable=not sys.stderr.isatty(),
                leave=False,
            ) as bar,
        ):
            block = np.empty((chunk, channels, image_size, image_size), dtype=np.uint8)
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                for i, result in zip(range(lo, hi), pool.map(work, range(lo, hi)), strict=True):
                    if isinstance(result, str):
                        errors.append(result)
                    else:
                        block[i - lo] = result
                if not errors:
                    view = memoryview(block[: hi - lo]).cast("B")
                    fh.write(view)
                    digest.update(view)
                bar.update(hi - lo)
                if time.perf_counter() >= next_report and hi < n:
                    next_report += _REPORT_EVERY_S
                    elapsed = time.perf_counter() - start
                    logger.info("decoded %d of %d images (%.0f/s)", hi, n, hi / elapsed)
            fh.flush()
            os.fsync(fh.fileno())
        if errors:
            shown = "\n  ".join(errors[:_MAX_REPORTED_ERRORS])
            more = len(errors) - _MAX_REPORTED_ERRORS
            tail = f"\n  ... and {more} more" if more > 0 else ""
            raise DataError(
                f"{len(errors)} of {n} images under {dataset.root} cannot be decoded; "
                f"fix or remove them and run again:\n  {shown}{tail}"
            )
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, data_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {
        "version": CACHE_FORMAT_VERSION,
        "key": key,
        "shape": list(shape),
        "dtype": "uint8",
        "root": str(dataset.root),
        "num_files": n,
        "files_sha256": file_list_hash(dataset.files),
        "sha256": digest.hexdigest(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    logger.info("decoded %d images in %.1f s", n, time.perf_counter() - start)
