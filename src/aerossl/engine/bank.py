"""The view bank: a frozen bottom of the network computed once, and batches drawn from it.

With ``model.trainable_stages: k`` only the last ``k`` feature units and the head train; the
units before them are frozen (eval mode). Recomputing them at every step is the main cost of a
CPU run, so the bank pushes ``bank.views`` augmented draws of every training image, for each
augmentation pipeline the method asks for, through the frozen bottom once, plus the plain image
of every image (for evaluation), and stores the outputs as memory-mapped arrays. Training then
draws, per image and view, one of the banked draws of that view's pipeline (different draws for
two views of one pipeline), and the network starts at unit ``len(units) - k``.

Files: ``<bank dir>/<key>/<pipeline>.bin`` of shape ``(views, N, C, H, W)`` (``clean``:
``(N, C, H, W)``; the file name also carries a hash of the pipeline's spec, the view count and
the seed) and ``<pipeline>.json`` with the images already computed. Each image's draws come
from its own seed, so the bank's content does not depend on which run filled it or in what
order; a run fills only the images its split needs (runs of other splits add theirs). The
key hashes the image cache, the frozen weights, the cut, the dtype and the backend that computes
the frozen units (:mod:`aerossl.engine.bottom`; each file name the pipeline's spec, view count
and seed): any change gives a new bank. A data file of the wrong
size is rebuilt; images are marked done (atomic rename) only after their data is flushed, so
a killed build never leaves a view that is trusted but not written. Runs that share a bank
(two seeds or two sweep cells started together, one per core) fill it together: each claims a
chunk (the images it needs among image numbers ``k * CHUNK`` to ``(k + 1) * CHUNK - 1`` of one
pipeline: the same chunks whatever the run's split) with an OS byte-range lock on ``.claims``
(released by the OS when a process dies), computes what is still missing in it and records it
under the folder's lock; a chunk another process holds is skipped and, once this process has
nothing else left, waited for (and computed if that process died without recording it).
Under ``torchrun`` the ranks of one run split every round of chunks instead, and where
byte-range locks are missing (Windows) runs take turns on the folder's lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs sharing a bank take turns
    fcntl = None  # type: ignore[assignment]

from aerossl.augment import Compose
from aerossl.batch import ViewSpec
from aerossl.data.cache_admin import touch
from aerossl.engine import distributed
from aerossl.engine.bottom import backend_name, frozen_bottom
from aerossl.engine.data import DataBundle
from aerossl.engine.stream import BatchStream
from aerossl.errors import DataError
from aerossl.models.normalize import Normalized

log = logging.getLogger("aerossl")

CHUNK = 64  # images computed (and recorded as done) together
BANK_FORMAT_VERSION = 2  # 2: convolutions pad by themselves (outputs differ in rounding)
CLEAN = "clean"  # the plain (un-augmented) images


def bank_key(images_key: str, network: Normalized, entry: int, dtype: str,
             backend: str = "torch") -> str:
    """sha256 over what determines the bank's content but the pipelines (each pipeline's file
    name carries the hash of its spec, view count and seed): the images, the frozen weights,
    the cut, the storage type and what computes the units (``backend``, with its version)."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": BANK_FORMAT_VERSION, "images": images_key, "entry": entry,
                         "dtype": dtype, "model": type(network.backbone).__name__,
                         **({"backend": backend} if backend != "torch" else {})},
                        sort_keys=True).encode())
    units = network.backbone.feature_units()[:entry]
    for t in [network.mean, network.std, *(v for u in units for v in u.state_dict().values())]:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _pipeline_file(name: str, spec: Any, views: int, seed: int) -> str:
    digest = hashlib.sha256(json.dumps([spec, views, seed], sort_keys=True).encode()).hexdigest()
    return f"{name}-{digest[:16]}"


def _image_seed(seed: int, pipeline: str, draw: int, image: int) -> int:
    digest = hashlib.sha256(f"{seed}/{pipeline}/{draw}/{image}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _reserve(path: Path, nbytes: int) -> None:
    """Give the (sparse) bank file its disk blocks now: a memory-mapped write to a full disk
    kills the process with SIGBUS, where this raises a clear error before any step."""
    blocks = getattr(path.stat(), "st_blocks", None)
    if blocks is None or blocks * 512 >= nbytes:
        return
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, nbytes)
        return
    except (AttributeError, OSError) as exc:  # no fallocate here (macOS, some file systems)
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        free = shutil.disk_usage(path.parent).free
        if not (full or free < nbytes - blocks * 512):
            return
    raise DataError(
        f"{path}: not enough disk space for the view bank ({nbytes / 1e9:.2f} GB, "
        f"{free / 1e9:.2f} GB free); free space with `aerossl cache prune`, or set bank.dir "
        "to a larger disk")


class _Store:
    """One pipeline's memory-mapped array and its record of computed images."""

    def __init__(self, folder: Path, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.data_path = folder / f"{name}.bin"
        self.meta_path = folder / f"{name}.json"
        self.shape, self.dtype = shape, dtype
        expected = int(np.prod(shape)) * dtype.itemsize
        done: list[int] = []
        if self.data_path.is_file() and self.data_path.stat().st_size == expected:
            try:
                meta = json.loads(self.meta_path.read_text())
                if meta.get("shape") == list(shape) and meta.get("dtype") == dtype.name:
                    done = [int(c) for c in meta["done"]]
            except (OSError, ValueError, KeyError, TypeError):
                done = []
        else:
            if self.data_path.exists():
                log.warning("view bank %s has %d bytes, expected %d: rebuilt", self.data_path,
                            self.data_path.stat().st_size, expected)
            self.meta_path.unlink(missing_ok=True)
            with open(self.data_path, "wb") as f:
                f.truncate(expected)
        _reserve(self.data_path, expected)
        self.done = set(done)
        self.array = np.memmap(self.data_path, dtype=dtype, mode="r+", shape=shape)

    def refresh(self) -> None:
        """Add the images another process marked as computed since this store was opened."""
        try:
            meta = json.loads(self.meta_path.read_text())
            self.done.update(int(c) for c in meta["done"])
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def mark(self, images: list[int]) -> None:
        """Flush the data, then record ``images`` as computed (atomic rename)."""
        self.array.flush()
        self.done.update(images)
        fd, tmp = tempfile.mkstemp(dir=self.meta_path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"shape": list(self.shape), "dtype": self.dtype.name,
                       "done": sorted(self.done)}, f)
        os.chmod(tmp, 0o644)  # a shared bank folder can be read by others, like the image cache
        os.replace(tmp, self.meta_path)


class ViewBank:
    """Cached bottom outputs: ``draws[pipeline]`` (views, N, C, H, W) and ``clean`` (N, ...)."""

    def __init__(self, network: Normalized, entry: int, data: DataBundle,
                 pipelines: dict[str, Compose], specs: dict[str, Any], views: int, seed: int,
                 dtype: str, folder: Path, device: torch.device, batch_size: int = 64,
                 backend: str = "auto") -> None:
        self.entry, self.views, self.seed = entry, views, seed
        self.device = device
        self.backend = backend_name(backend, device)
        key = bank_key(data.cache_key, network, entry, dtype, self.backend)
        self.folder = Path(folder) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        touch(self.folder)  # its last use, for `aerossl cache prune`
        self._lock = FileLock(self.folder / ".lock")
        n = len(data.labels)
        was_training = network.training
        with torch.no_grad():
            network.eval()
            probe = network.forward_bottom(data.images[:1].float().div(255).to(device), entry)
            network.train(was_training)
        self.feature_shape = tuple(probe.shape[1:])
        np_dtype = np.dtype(dtype)
        with self._locked():  # another run may be creating or filling the same files
            self.clean_store = _Store(self.folder, CLEAN, (n, *self.feature_shape), np_dtype)
            self.stores = {p: _Store(self.folder, _pipeline_file(p, specs[p], views, seed),
                                     (views, n, *self.feature_shape), np_dtype)
                           for p in pipelines}
        self._network, self._pipelines, self._data = network, pipelines, data
        self._batch_size = batch_size

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the bank folder's lock (released by the OS if this process dies), so runs that
        share a bank compute each view once and never truncate each other's files."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            log.info("view bank %s: another process is writing it; waiting", self.folder)
            self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    @property
    def clean(self) -> torch.Tensor:
        """Bottom outputs of the plain images (N, C, H, W), for evaluation and hooks."""
        return torch.from_numpy(self.clean_store.array)

    def draws(self, pipeline: str) -> torch.Tensor:
        """Bottom outputs of the banked draws of ``pipeline`` (views, N, C, H, W)."""
        return torch.from_numpy(self.stores[pipeline].array)

    @torch.no_grad()
    def fill(self, augmented: np.ndarray, clean: np.ndarray, rank: int = 0,
             world_size: int = 1) -> None:
        """Compute what is missing: every pipeline's draws of the ``augmented`` images and the
        plain ``clean`` images. Each image's draws come from its own seed.

        Under ``torchrun`` every rank calls this with the same arguments: rank 0 holds the
        folder's lock, each rank computes its share of every round of ``CHUNK`` images per
        rank, and rank 0 records a round as done once every rank has flushed its share. A
        single process shares the work with other runs filling the same bank (module
        docstring)."""
        if world_size == 1 and fcntl is not None:
            self._fill_shared(augmented, clean)
            return
        with self._locked() if rank == 0 else contextlib.nullcontext():
            distributed.barrier()  # the other ranks wait while rank 0 takes the lock
            self._fill(augmented, clean, rank, world_size)
            distributed.barrier()

    def _todo(self, augmented: np.ndarray, clean: np.ndarray
              ) -> tuple[list[tuple[str, _Store, list[int]]], int]:
        """Per pipeline the images not yet computed (after reading what other runs recorded),
        and the number of image views they make."""
        for store in (self.clean_store, *self.stores.values()):
            store.refresh()  # what another run computed while this one waited
        work = [(CLEAN, self.clean_store, [int(i) for i in clean])]
        work += [(p, s, [int(i) for i in augmented]) for p, s in self.stores.items()]
        work = [(p, s, [i for i in idx if i not in s.done]) for p, s, idx in work]
        return work, sum(len(idx) * self._views_of(p) for p, _, idx in work)

    def _views_of(self, pipeline: str) -> int:
        return 1 if pipeline == CLEAN else self.views

    @contextlib.contextmanager
    def _bottom(self) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        """The frozen units as a function (the network in eval mode meanwhile)."""
        network = self._network
        was_training = network.training
        network.eval()
        try:
            yield frozen_bottom(network, self.entry, self.backend,
                                self._data.images[:1].to(self.device).float().div(255.0))
        finally:
            network.train(was_training)

    def _fill_shared(self, augmented: np.ndarray, clean: np.ndarray) -> None:
        """Fill alongside any other process filling this bank: claim a chunk (non-blocking
        byte-range lock), compute what is still missing in it, record it under the folder's
        lock; chunks held by others are waited for at the end."""
        work, total = self._todo(augmented, clean)
        if not total:
            return
        log.info("view bank: %d image views to compute at %s (%s)", total, self.folder,
                 self.backend)
        # chunks are blocks of image numbers, the same in every run whatever its split, so runs
        # of different splits meet on the images they share
        chunks = []
        for pipeline, store, idx in work:
            blocks: dict[int, list[int]] = {}
            for i in idx:
                blocks.setdefault(i // CHUNK, []).append(i)
            chunks += [(pipeline, store, blocks[b]) for b in sorted(blocks)]
        progress, mine, n = _Progress(total), 0, len(self._data.labels)
        with self._bottom() as bottom, open(self.folder / ".claims", "a+b") as claims:
            for blocking in (False, True):  # first every free chunk, then the others' ones
                deferred = []
                for pipeline, store, chunk in chunks:
                    offset = _claim_offset(store, n, chunk[0] // CHUNK)
                    claimed = _claim(claims, offset, blocking)
                    if claimed is False:
                        deferred.append((pipeline, store, chunk))
                        continue
                    try:
                        store.refresh()
                        left = [i for i in chunk if i not in store.done]
                        if left:
                            self._compute(bottom, pipeline, store, torch.as_tensor(left))
                            store.array.flush()
                            with self._lock:  # others record theirs too: merge, then write
                                store.refresh()
                                store.mark(left)
                            mine += len(left) * self._views_of(pipeline)
                    finally:
                        if claimed:
                            fcntl.lockf(claims, fcntl.LOCK_UN, 1, offset)
                    progress.add(len(chunk) * self._views_of(pipeline))
                chunks = deferred
        log.info("view bank: this run computed %d of the %d image views%s", mine, total,
                 ", other runs the rest" if mine < total else "")

    def _fill(self, augmented: np.ndarray, clean: np.ndarray, rank: int,
              world_size: int) -> None:
        work, total = self._todo(augmented, clean)
        if not total:
            return
        if rank == 0:
            log.info("view bank: %d image views to compute at %s (%s%s)", total, self.folder,
                     self.backend, f", {world_size} processes" if world_size > 1 else "")
        progress, step = _Progress(total, show=rank == 0), CHUNK * world_size
        with self._bottom() as bottom:
            for pipeline, store, todo in work:
                for c in range(0, len(todo), step):
                    chunk = todo[c:c + step]
                    mine = chunk[rank * CHUNK:(rank + 1) * CHUNK]
                    if mine:
                        self._compute(bottom, pipeline, store, torch.as_tensor(mine))
                        store.array.flush()
                    distributed.barrier()  # every rank's share of this round is on disk
                    if rank == 0:
                        store.mark(chunk)
                    else:
                        store.done.update(chunk)
                    progress.add(len(chunk) * self._views_of(pipeline))

    def _compute(self, bottom: Callable[[torch.Tensor], torch.Tensor], pipeline: str,
                 store: _Store, idx: torch.Tensor) -> None:
        """Write the bottom outputs of images ``idx`` (every draw of ``pipeline``) to
        ``store``."""
        x = self._data.images[idx].to(self.device).float().div_(255.0)
        for d in range(1 if pipeline == CLEAN else self.views):
            v = x if pipeline == CLEAN else torch.cat([
                self._pipelines[pipeline](x[j:j + 1], torch.Generator().manual_seed(
                    _image_seed(self.seed, pipeline, d, int(i))))
                for j, i in enumerate(idx)])
            out = torch.cat([bottom(v[i:i + self._batch_size])
                             for i in range(0, len(v), self._batch_size)])
            out = out.to("cpu", _torch_dtype(store.dtype)).numpy()
            if pipeline == CLEAN:
                store.array[idx.numpy()] = out
            else:
                store.array[d, idx.numpy()] = out


class _Progress:
    """Logs ``done/total`` image views, their rate and the time left, at most every 30 s."""

    def __init__(self, total: int, show: bool = True) -> None:
        self.total, self.show, self.done = total, show, 0
        self.start, self.last = time.perf_counter(), 0.0

    def add(self, views: int) -> None:
        self.done += views
        now = time.perf_counter()
        if self.show and (now - self.last > 30 or self.done == self.total):
            self.last = now
            rate = self.done / (now - self.start)
            log.info("view bank: %d/%d image views (%.0f/s, %.0f s left)", self.done,
                     self.total, rate, (self.total - self.done) / rate)


def _claim(claims: Any, offset: int, blocking: bool) -> bool | None:
    """Lock byte ``offset`` of the claims file: True when taken, False when another process
    holds it (non-blocking), None where the file system has no byte-range locks (the chunk is
    then computed unclaimed: another run may compute it too, to the same values)."""
    try:
        fcntl.lockf(claims, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB), 1, offset)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        log.debug("view bank: no byte-range lock (%s); computing unclaimed", exc)
        return None
    return True


def _claim_offset(store: _Store, n: int, block: int) -> int:
    """The byte of ``.claims`` that stands for images ``block * CHUNK`` to ``(block + 1) *
    CHUNK - 1`` of ``store`` (a pipeline file's hash picks its range of ``n`` bytes)."""
    base = int(hashlib.sha256(store.data_path.name.encode()).hexdigest()[:8], 16)
    return base * n + block


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.float16 if dtype == np.float16 else torch.float32


class BankBatchBuilder(BatchStream):
    """Draws index batches like :class:`~aerossl.engine.data.BatchBuilder`, with each view one
    of the image's banked draws of the view's pipeline instead of a fresh augmentation."""

    def __init__(self, bank: ViewBank, data: DataBundle, views: ViewSpec, batch_size: int,
                 unlabeled_batch_size: int, seed: int, device: torch.device,
                 rank: int = 0, world_size: int = 1, dihedral: bool = False) -> None:
        super().__init__(data, views, batch_size, unlabeled_batch_size, seed, device, rank,
                         world_size)
        self.bank = bank
        self.dihedral = dihedral
        self.draws = {p: bank.draws(p) for p in views.pipelines()}
        if device.type == "cuda":
            self.draws = {p: d.to(device) for p, d in self.draws.items()}

    def _views(self, idx: torch.Tensor, spec: dict[str, str]) -> dict[str, torch.Tensor]:
        # a random order of the banked draws per image: views of one pipeline take the first,
        # second, ... so two views of one image never share a draw
        order = torch.rand(len(idx), self.bank.views, generator=self.generator).argsort(dim=1)
        used: dict[str, int] = {}
        out = {}
        for view, pipeline in spec.items():
            k = used.get(pipeline, 0)
            used[pipeline] = k + 1
            draw = order[:, k % self.bank.views]
            draws = self.draws[pipeline]
            x = draws[draw.to(draws.device), idx.to(draws.device)].to(
                self.device, non_blocking=True).float()
            out[view] = self._dihedral(x) if self.dihedral else x
        return out

    def _dihedral(self, x: torch.Tensor) -> torch.Tensor:
        """One of the 8 flips and 90-degree rotations of each feature map, at random."""
        k = torch.randint(0, 4, (len(x),), generator=self.generator).to(x.device)
        flip = (torch.rand(len(x), generator=self.generator) < 0.5).to(x.device)
        x = x.clone()
        for r in (1, 2, 3):
            if bool((k == r).any()):
                x[k == r] = torch.rot90(x[k == r], r, (2, 3))
        if bool(flip.any()):
            x[flip] = x[flip].flip(3)
        return x
