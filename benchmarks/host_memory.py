"""The pretrained recipe's CPU step with glibc's default allocator thresholds and with freed
host memory kept in the process (glibc's mmap and trim thresholds raised with ``mallopt``).

glibc hands large freed blocks back to the kernel (and trims the heap's free top), so a step
that allocates and frees the same tens of MB of activations every step faults fresh zeroed
pages in every step. This measures whether that costs the step time: the same step with both
thresholds at their largest value (freed blocks stay in the heap and are reused).

Each measurement is a fresh process (the thresholds are process-wide), running the recipe's
step on its trainable top (``benchmarks/pool_backward.py``: 96 weak views without autograd,
32 + 96 views forward and backward, an SGD update; channels-last, random weights and maps):
``--warmup`` steps, then ``--steps`` timed ones. Per step: the median wall seconds, the minor
page faults and the kernel (system) CPU seconds, from ``getrusage``; and the process's peak
resident memory. The two settings alternate ``--rounds`` times, so both see the machine's
drift.

    python benchmarks/host_memory.py --threads 1 2 --out benchmarks/results/host_memory.md
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import results_header, write_results

CHILD = """
import ctypes, json, resource, statistics, sys
import torch
threads, steps, warmup, keep = (int(a) for a in sys.argv[1:5])
applied = False
if keep:  # M_MMAP_THRESHOLD (-3) and M_TRIM_THRESHOLD (-1) at their largest value
    libc = ctypes.CDLL("libc.so.6")
    applied = bool(libc.mallopt(-3, 2**31 - 1) and libc.mallopt(-1, 2**31 - 1))
sys.path.insert(0, sys.argv[5])
from pool_backward import recipe_maps, recipe_top, timed_step
torch.set_num_threads(threads)
top, opt = recipe_top()
maps = recipe_maps()
for _ in range(warmup):
    timed_step(top, opt, maps)
before = resource.getrusage(resource.RUSAGE_SELF)
times = [timed_step(top, opt, maps) for _ in range(steps)]
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"applied": applied, "median": statistics.median(times),
                  "faults": (after.ru_minflt - before.ru_minflt) / steps,
                  "sys": (after.ru_stime - before.ru_stime) / steps,
                  "rss_mb": after.ru_maxrss / 1024}))
"""


def run(threads: int, steps: int, warmup: int, keep: bool) -> dict:
    """One fresh process's measurement."""
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps), str(warmup),
                          str(int(keep)), here], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if keep and not result["applied"]:
        raise SystemExit("mallopt refused the thresholds (not glibc?)")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--context", default="nothing else ran", help="what else ran meanwhile")
    p.add_argument("--out", default="benchmarks/results/host_memory.md")
    args = p.parse_args(argv)
    rows, summary = [], []
    for threads in args.threads:
        medians: dict[bool, list[float]] = {False: [], True: []}
        for rnd in range(args.rounds):
            for keep in (False, True):
                r = run(threads, args.steps, args.warmup, keep)
                medians[keep].append(r["median"])
                rows.append(f"| {threads} | {rnd + 1} | {'kept' if keep else 'default'} | "
                            f"{r['median']:.3f} | {r['faults']:,.0f} | {r['sys']:.3f} | "
                            f"{r['rss_mb']:,.0f} |")
                print(rows[-1], flush=True)
        base, kept = statistics.mean(medians[False]), statistics.mean(medians[True])
        saved = 100 * (1 - kept / base)
        summary.append(f"| {threads} | {base:.3f} | {kept:.3f} | {saved:+.1f} % |")
    text = "\n".join([
        *results_header("Freed host memory kept in the process: the recipe's CPU step",
                        "host_memory.py", argv=argv, meanwhile=args.context,
                        software=" ".join(platform.libc_ver())),
        "Mean over rounds of each process's median step (seconds):",
        "",
        "| threads | default | kept | step time saved |",
        "|---|---|---|---|",
        *summary,
        "",
        "Each process (per step: median wall seconds, minor page faults, system CPU seconds; "
        "the process's peak resident memory in MB):",
        "",
        "| threads | round | allocator | s/step | page faults/step | system s/step | peak MB |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    write_results(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
