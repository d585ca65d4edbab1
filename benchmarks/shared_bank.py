"""Runs started together on a cold view bank: how long until each one has its views.

Starts one ``aerossl train`` process per seed at the same moment, each pinned to its own core
with one thread (what ``aerossl sweep ... --seeds 1`` and ``--seeds 2`` on two cores do), with a
fresh image cache and bank folder shared by all of them, and 1 training step (the bank is what
is measured). Per run: its bank minutes (from the run's summary), the image views it computed
itself and the views its split needs (from its log). Two seeds have two splits: their train
images overlap, and each view is computed once between them.

    python benchmarks/shared_bank.py ucmerced_pretrained_fixmatch --seeds 1 2 \\
        --root ../shared/data/ucmerced --out benchmarks/results/shared_bank.md \\
        --context "nothing else ran"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, cpu_name

COMPUTED = re.compile(r"this run computed (\d+) of the (\d+) image views")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--root", required=True, help="data.root of the runs")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--context", default="not stated", help="what else ran meanwhile")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args()
    work = Path(tempfile.mkdtemp(prefix="shared_bank_"))
    procs = []
    t0 = time.perf_counter()
    for core, seed in enumerate(args.seeds):
        cmd = ["taskset", "-c", str(core), sys.executable, "-m", "aerossl.cli", "train",
               args.config, f"data.root={args.root}", f"seed={seed}", f"name=s{seed}",
               f"output_dir={work / 'runs'}", f"data.cache_dir={work / 'cache'}",
               "train.steps=1", "train.eval_every=1", "train.num_threads=1",
               "train.progress=false", *args.overrides]
        log = open(work / f"s{seed}.log", "w")  # noqa: SIM115 - closed after the wait
        procs.append((seed, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    rows = []
    for seed, proc, log in procs:
        if proc.wait() != 0:
            raise SystemExit(f"seed {seed} failed: see {log.name}")
        log.close()
        text = Path(log.name).read_text()
        found = COMPUTED.findall(text)
        summary = json.loads((work / "runs" / f"s{seed}" / "summary.json").read_text())
        rows.append({"seed": seed, "bank_min": summary["bank_minutes"],
                     "computed": int(found[0][0]) if found else 0,
                     "needed": int(found[0][1]) if found else 0})
    wall = (time.perf_counter() - t0) / 60
    lines = [
        f"## `{args.config}`: {len(args.seeds)} runs started together, cold bank", "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: "
        f"{cpu_name()}, one core and one thread per run",
        f"- command: `{command('shared_bank.py')}`",
        f"- meanwhile: {args.context}", "",
        "| seed | bank minutes | views computed by this run | views its split needs |",
        "|---|---|---|---|",
        *(f"| {r['seed']} | {r['bank_min']:.1f} | {r['computed']:,} | {r['needed']:,} |"
          for r in rows),
        "", f"All runs done (1 step each, evaluation included) {wall:.1f} min after the start; "
        f"views computed in all: {sum(r['computed'] for r in rows):,}.", "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = args.out.read_text() if args.out.is_file() else (
        "# Runs sharing a cold view bank\n\nWritten by `benchmarks/shared_bank.py` (see its "
        "docstring).\n\n")
    args.out.write_text(old + "\n".join(lines) + "\n")
    shutil.rmtree(work)  # caches, banks and runs: GBs
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
