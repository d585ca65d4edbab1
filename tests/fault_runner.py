"""Run ``aerossl`` in a subprocess that the fault-injection tests SIGKILL (tests/test_faults.py).

Usage: ``python tests/fault_runner.py train CFG.yaml [overrides...]`` or
``python tests/fault_runner.py train --resume RUN_DIR`` (the arguments go to ``aerossl.cli.main``).

``python tests/fault_runner.py --serve`` imports torch and aerossl once and then, for each JSON
line ``{"argv": [...], "env": {...}, "log": PATH}`` read from stdin, forks a child that runs the
same as above with ``env`` added to its environment and its output in ``log``; it answers
``{"pid": PID}`` when the child starts and ``{"pid": PID, "rc": RC}`` when it ends (``RC`` is
minus the signal number for a killed child). Forking saves the ~2 s import per run, so a test
can afford many kills; the child is a real process, killed for real.

Optionally one checkpoint write is paused so that a kill lands in the middle of it:

``FAULT_PAUSE_AT``
    ``fsync`` (the temp file is written and flushed but not yet synced or renamed) or
    ``replace`` (synced, not yet renamed onto the target). Unset: no pause.
``FAULT_PAUSE_NTH``
    pause at the n-th write (1-based) of a file named ``FAULT_PAUSE_NAME`` in this process
    (default 1).
``FAULT_PAUSE_NAME``
    the checkpoint file name whose writes are counted (default ``last.pt``).
``FAULT_MARKER``
    a file written (with the target path) right before the pause, so the test knows when to
    kill; the process then sleeps until it is killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def _install_pause() -> None:
    where = os.environ.get("FAULT_PAUSE_AT")
    if not where:
        return
    if where not in ("fsync", "replace"):
        raise SystemExit(f"FAULT_PAUSE_AT must be fsync or replace, got {where!r}")
    nth = int(os.environ.get("FAULT_PAUSE_NTH", "1"))
    name = os.environ.get("FAULT_PAUSE_NAME", "last.pt")
    marker = Path(os.environ["FAULT_MARKER"])
    from aerossl.engine import checkpoint

    seen = 0

    def pause_if_due(target: str) -> None:
        nonlocal seen
        if Path(target).name != name and not Path(target).name.startswith(f".{name}."):
            return
        seen += 1
        if seen == nth:
            tmp = marker.with_name(marker.name + ".tmp")
            tmp.write_text(target)
            os.replace(tmp, marker)  # the test sees the marker complete or not at all
            while True:  # wait for SIGKILL
                time.sleep(60)

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")  # the temp file, named .last.pt.XXX.tmp
        if where == "fsync":
            pause_if_due(target)
        os.fsync(fd)

    def replace(src: str, dst: str) -> None:
        if where == "replace":
            pause_if_due(str(dst))
        os.replace(src, dst)

    # Only the checkpoint module sees the patched functions.
    patched = {k: getattr(os, k) for k in dir(os) if not k.startswith("__")}
    patched.update(fsync=fsync, replace=replace)
    checkpoint.os = SimpleNamespace(**patched)  # type: ignore[assignment]


def _run(argv: list[str]) -> int:
    _install_pause()
    from aerossl.cli import main as cli_main

    return cli_main(argv)


def _serve() -> int:
    import json

    # import torch and aerossl once, before forking (torch._dynamo is otherwise imported lazily
    # by the first optimiser, which costs every child 1 s)
    import torch._dynamo  # noqa: F401

    import aerossl.cli
    import aerossl.engine.trainer  # noqa: F401

    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # child
            rc = 1
            try:
                fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.environ.update(req.get("env", {}))
                rc = _run(req["argv"])
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(rc)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"pid": pid, "rc": rc}), flush=True)
    return 0


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        return _serve()
    return _run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
