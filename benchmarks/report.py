"""What every benchmark's results file starts with: when, on what, by which command, beside what.

The benchmark scripts import this from their own folder (``python benchmarks/<script>.py`` puts
``benchmarks/`` on the path). A results file is only worth keeping with the machine it ran on,
the exact command and what else ran meanwhile (a torch run slows several-fold beside another).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """``x86_64, 2 cores (AMD EPYC, no GPU)``: the architecture, cores and CPU model."""
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu_name()}, no GPU)"


def command(script: str, argv: list[str] | None = None) -> str:
    """The command line that reruns ``benchmarks/<script>`` with ``argv`` (default: this
    process's own arguments), quoted for a POSIX shell."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", f"benchmarks/{script}", *args])


def results_header(title: str, script: str, *, meanwhile: str, argv: list[str] | None = None,
                   about: str = "", software: str = "", load: float | None = None) -> list[str]:
    """The opening lines of a results file.

    ``title``: the heading; ``script``: the file name under ``benchmarks/``; ``meanwhile``: what
    else ran on the machine; ``argv``: the script's arguments (default: ``sys.argv[1:]``);
    ``about``: a sentence after "Written by ..."; ``software``: versions after the machine
    (e.g. ``torch 2.13.0``); ``load``: the load average before the run, when measured.
    """
    written = f"Written by `benchmarks/{script}` (see its docstring)."
    stamp = f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()}"
    before = "" if load is None else f"load average before: {load:.2f}; "
    return [
        f"# {title}",
        "",
        f"{written} {about}" if about else written,
        "",
        f"{stamp}; {software}" if software else stamp,
        f"- command: `{command(script, argv)}`",
        f"- {before}meanwhile: {meanwhile}",
        "",
    ]


def write_results(path: str | Path | None, text: str, *, echo: bool = True) -> None:
    """Write ``text`` to ``path`` (when given) and print it (when ``echo``)."""
    if path:
        Path(path).write_text(text)
    if echo:
        print(text)
