"""What the cache folder holds, and freeing its disk: ``aerossl cache list|prune``.

The cache folder (``$AEROSSL_CACHE_DIR``, ``~/.cache/aerossl``, or a config's
``data.cache_dir``) fills as runs go: each data set and image size decodes once into
``<key>.u8`` + ``<key>.json`` (:mod:`aerossl.data.cache`), and each pretrained cut banks its
views into ``banks/<key>/`` (:mod:`aerossl.engine.bank`), a few hundred MB to several GB per
data set. Nothing is ever deleted by a run; this module lists the entries with their size and
when a run last used them, and removes the ones a user no longer needs.

"Last used" is the newest modification time among an entry's files: a run that finds an image
cache or a bank touches it (:func:`touch`). Removing an entry a running process has open is
safe on POSIX systems (the process keeps its mapping; the next run rebuilds the entry). Partial
files of a decode in progress (``.<key>.*.tmp``) younger than an hour are never removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EntryKind = Literal["images", "bank", "partial"]
PARTIAL_GRACE_S = 3600.0
"""Partial files younger than this may belong to a decode in progress: never pruned."""


@dataclass(frozen=True)
class CacheEntry:
    """One removable unit of the cache folder."""

    kind: EntryKind
    path: Path  #: the ``.u8`` file, the bank folder or the partial file
    size: int  #: bytes its files take on disk
    last_used: float  #: newest modification time of its files (seconds since the epoch)
    source: str  #: image caches: the data set's root folder; banks: the shape of its maps

    def files(self) -> list[Path]:
        """The files this entry consists of."""
        if self.kind == "bank":
            return [p for p in self.path.rglob("*") if p.is_file()]
        if self.kind == "images":
            return [p for p in (self.path, self.path.with_suffix(".json")) if p.exists()]
        return [self.path]


def touch(path: Path) -> None:
    """Mark a cache entry as used now (a read-only shared cache stays as it is)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _stats(paths: list[Path]) -> tuple[int, float]:
    size, newest = 0, 0.0
    for p in paths:
        try:
            st = p.stat()
        except OSError:  # removed meanwhile
            continue
        blocks = getattr(st, "st_blocks", None)  # banks are sparse until filled
        size += st.st_size if blocks is None else min(st.st_size, blocks * 512)
        newest = max(newest, st.st_mtime)
    return size, newest


def _image_source(meta: Path) -> str:
    try:
        info = json.loads(meta.read_text())
        shape = "x".join(str(s) for s in info["shape"][1:])
        return f"{info['root']} ({info['shape'][0]} images, {shape})"
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return "(no readable metadata)"


def _bank_source(folder: Path) -> str:
    try:
        info = json.loads((folder / "clean.json").read_text())
        return f"{info['shape'][0]} images, maps {'x'.join(map(str, info['shape'][1:]))}"
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return "(not filled)"


def cache_entries(cache_dir: Path) -> list[CacheEntry]:
    """Every image cache, view bank and partial file under ``cache_dir``, oldest use first."""
    entries: list[CacheEntry] = []
    if not cache_dir.is_dir():
        return entries
    for data in cache_dir.glob("*.u8"):
        meta = data.with_suffix(".json")
        size, used = _stats([data, meta])
        entries.append(CacheEntry("images", data, size, used, _image_source(meta)))
    for partial in cache_dir.glob(".*.tmp"):
        size, used = _stats([partial])
        entries.append(CacheEntry("partial", partial, size, used, "unfinished write"))
    banks = cache_dir / "banks"
    if banks.is_dir():
        for folder in (p for p in banks.iterdir() if p.is_dir()):
            size, used = _stats([folder, *(p for p in folder.rglob("*") if p.is_file())])
            entries.append(CacheEntry("bank", folder, size, used, _bank_source(folder)))
    return sorted(entries, key=lambda e: e.last_used)


def select_for_pruning(entries: list[CacheEntry], older_than_days: float | None = None,
                       max_bytes: int | None = None, everything: bool = False,
                       now: float | None = None) -> list[CacheEntry]:
    """The entries to remove: unused for ``older_than_days``, then the least recently used
    until the rest fit in ``max_bytes``; or all with ``everything``. Recent partial files
    (:data:`PARTIAL_GRACE_S`) are always kept."""
    now = time.time() if now is None else now
    candidates = [e for e in entries
                  if not (e.kind == "partial" and now - e.last_used < PARTIAL_GRACE_S)]
    if everything:
        return candidates
    chosen: list[CacheEntry] = []
    if older_than_days is not None:
        cutoff = now - older_than_days * 86400
        chosen = [e for e in candidates if e.last_used < cutoff]
    if max_bytes is not None:
        total = sum(e.size for e in entries) - sum(e.size for e in chosen)
        for e in sorted(candidates, key=lambda e: e.last_used):
            if total <= max_bytes:
                break
            if e not in chosen:
                chosen.append(e)
                total -= e.size
    return chosen


def remove(entry: CacheEntry) -> str | None:
    """Delete an entry's files; the reason it could not be, or None."""
    try:
        if entry.kind == "bank":
            shutil.rmtree(entry.path)
        else:
            for p in entry.files():
                p.unlink(missing_ok=True)
    except OSError as exc:
        return str(exc)
    return None
