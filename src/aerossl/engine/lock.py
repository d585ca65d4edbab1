"""One writer per run folder: an OS file lock on ``run_dir/.lock`` (the ``filelock`` package).

The operating system releases the lock when the holding process ends, however it ends
(crash, SIGKILL, power loss of a remote node aside), so a killed run never leaves its folder
stuck and there is no stale-lock guessing. The holder writes its process id, host and start
time to ``run_dir/.lock.holder`` after taking the lock, so a refused process can name it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from aerossl.errors import CheckpointError

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock.holder"


class RunLock:
    """Context manager that holds ``run_dir/.lock`` while a run writes to ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.holder_path = self.run_dir / HOLDER_NAME
        self._lock: FileLock | None = None

    def _read_holder(self) -> dict[str, Any]:
        """What the holder wrote about itself (empty when unreadable or not yet written)."""
        try:
            data = json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _refusal(self) -> CheckpointError:
        data = self._read_holder()
        who = (f"process {data.get('pid', '?')} on {data.get('host', '?')} (started "
               f"{data.get('started', '?')})" if data else "another process")
        return CheckpointError(f"run folder {self.run_dir} is in use by {who}; wait for it to "
                               f"finish or stop it")

    def holder(self) -> dict[str, Any] | None:
        """The process holding the lock (as it describes itself), or None when it is free.

        Probes with a shared lock, which conflicts with a holder's exclusive lock but not with
        other probes (the ranks of a distributed run all check at once)."""
        if not self.path.exists():
            return None
        if fcntl is None:  # no flock (Windows): probe by taking the lock itself
            probe = FileLock(self.path, timeout=0)
            try:
                probe.acquire()
            except Timeout:
                return self._read_holder() or {"pid": None}
            probe.release()
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._read_holder() or {"pid": None}
        finally:
            os.close(fd)  # also drops the shared lock when it was taken
        return None

    def check(self) -> None:
        """Raise CheckpointError if another process holds the lock."""
        if self._lock is None and self.holder() is not None:
            raise self._refusal()

    def acquire(self) -> None:
        """Take the lock without waiting; raise CheckpointError if another process holds it."""
        lock = FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise self._refusal() from None
        except OSError as e:
            raise CheckpointError(f"cannot create lock file {self.path}: {e}") from e
        self._lock = lock
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            self.holder_path.write_text(json.dumps(info), encoding="utf-8")
        except OSError as e:
            self.release()
            raise CheckpointError(f"cannot write {self.holder_path}: {e}") from e

    def release(self) -> None:
        """Release the lock (and remove the holder's note) if this object holds it."""
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            self.holder_path.unlink(missing_ok=True)
        self._lock.release()
        self._lock = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
