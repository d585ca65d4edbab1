"""The pretrained recipe's training step, eager against ``torch.compile``, in one process.

One step is what ``ucmerced_pretrained_fixmatch`` does in its model (see
``benchmarks/pool_backward.py``, whose ``Top`` this reuses): a no-autograd forward of the 96
weak views, then a forward and backward of the 32 labelled and 96 strong views, and an SGD
update, channels-last, on EfficientNet-Lite0's last three feature units and a 21-class head.

Two copies of the top with the same weights: one eager, one wrapped in ``torch.compile``
(TorchInductor's CPU backend, ``--mode``). The compiled copy's first steps (its compilation,
for the no-autograd and the autograd graph) are timed apart; then the steps alternate, so both
see the same machine noise, and the table gives the median and the fastest of ``--steps``.

    python benchmarks/step_compile.py --threads 2 --out benchmarks/results/step_compile.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_backward import recipe_maps, recipe_top, timed_step
from report import results_header, write_results


def measure(threads: int, steps: int, mode: str) -> tuple[dict[str, list[float]], float]:
    """Seconds per step, eager and compiled alternating, and the compiled copy's warm-up."""
    torch.set_num_threads(threads)
    maps = recipe_maps()
    models = {}
    for name in ("eager", "compiled"):
        top, opt = recipe_top()
        models[name] = (top if name == "eager" else torch.compile(top, mode=mode), opt)
    for _ in range(2):
        timed_step(*models["eager"], maps)
    warmup = sum(timed_step(*models["compiled"], maps) for _ in range(2))
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(steps):
        for name, pair in models.items():
            times[name].append(timed_step(*pair, maps))
    return times, warmup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--mode", default="default", help="torch.compile mode")
    p.add_argument("--context", default="nothing else ran", help="what else ran meanwhile")
    p.add_argument("--out", default="benchmarks/results/step_compile.md")
    args = p.parse_args(argv)
    rows = []
    for threads in args.threads:
        times, warmup = measure(threads, args.steps, args.mode)
        base = statistics.median_high(times["eager"])
        for name, ts in times.items():
            median = statistics.median_high(ts)
            first = f"{warmup:.1f}" if name == "compiled" else "-"
            rows.append(f"| {threads} | {name} | {first} | {median:.3f} | {min(ts):.3f} | "
                        f"{100 * (1 - median / base):+.1f} % |")
            print(rows[-1], flush=True)
    head = results_header("The pretrained top's CPU step: eager against torch.compile",
                          "step_compile.py", argv=argv, meanwhile=args.context,
                          software=f"torch {torch.__version__}; "
                          f"`torch.compile(mode={args.mode!r})`")
    text = (
        "\n".join(head) + "\n"
        f"Steps alternate between the eager and the compiled copy in one process ({args.steps} "
        "each, after 2 warm-up steps each); 'first two s' is the compiled copy's first two "
        "steps (compilation included); 'saved' is the median's drop against eager.\n\n"
        "| threads | top | first two s | median s/step | fastest s/step | saved |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    write_results(args.out, text, echo=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
