"""One writer per run folder: a lock file naming the process that trains in it.

``run_dir/.lock`` is created atomically (``O_CREAT | O_EXCL``) and holds
``{"pid", "host", "started"}``. A lock whose process has died on this host, or that cannot be
read, is taken over with a warning, so a crashed or killed run never leaves its folder stuck.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from aerossl.errors import CheckpointError

log = logging.getLogger("aerossl")

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunLock:
    """Context manager that holds ``run_dir/.lock`` while a run writes to ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._content: str | None = None

    def _read(self) -> dict[str, Any] | None:
        """The lock's content, or None when it is missing, unreadable or garbled."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None

    def holder(self) -> dict[str, Any] | None:
        """The live process holding the lock (as written in the file), or None."""
        data = self._read()
        if data is None:
            return None
        if data.get("host") != socket.gethostname():
            return data  # cannot tell whether a process on another host is alive: assume it is
        return data if _alive(data["pid"]) else None

    def check(self) -> None:
        """Raise CheckpointError if another live process holds the lock."""
        data = self.holder()
        if data is not None:
            raise CheckpointError(
                f"run folder {self.run_dir} is in use by process {data['pid']} on "
                f"{data.get('host', '?')} (started {data.get('started', '?')}); wait for it to "
                f"finish or stop it, or delete {self.path} if that process is not running"
            )

    def acquire(self) -> None:
        """Create the lock file, taking over a stale one; raise CheckpointError if it is held."""
        self._content = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as e:
                raise CheckpointError(f"cannot create lock file {self.path}: {e}") from e
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self._content)
            return
        raise CheckpointError(f"could not take the lock {self.path} (another process keeps "
                              f"taking it)")

    def _take_over_if_stale(self) -> None:
        data = self._read()
        if data is None:  # maybe being written right now: look once more before taking over
            time.sleep(0.1)
            data = self._read()
        if data is not None:
            self.check()
            log.warning("taking over the lock of run folder %s from process %s on %s (started %s), "
                        "which is no longer running", self.run_dir, data["pid"], data.get("host"),
                        data.get("started"))
        else:
            log.warning("taking over the unreadable lock file %s", self.path)
        try:
            self.path.unlink(missing_ok=True)
        except OSError as e:
            raise CheckpointError(f"cannot remove stale lock file {self.path}: {e}") from e

    def release(self) -> None:
        """Remove the lock file if it is still this process's."""
        if self._content is None:
            return
        try:
            if self.path.read_text(encoding="utf-8") == self._content:
                self.path.unlink()
        except OSError:
            pass
        self._content = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
