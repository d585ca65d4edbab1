"""The pretrained recipe's training step with two global poolings, alternated in one process.

``ucmerced_pretrained_fixmatch`` trains EfficientNet-Lite0's last three feature units (stage 6,
stage 7, the head convolution) and the head from banked 14 x 14 x 112 maps. One step here is
what the recipe's step does in its model: a no-autograd forward of the 96 weak views, then a
forward and backward of the 32 labelled and 96 strong views, and an SGD update, channels-last.

Two otherwise identical copies of the top (same weights) differ only in their global pooling:
``adaptive_avg_pool2d`` (whose backward hands the layer below a default-layout gradient) and
:func:`aerossl.models.pool.global_avg_pool` (same values, gradient in the input's layout).
Their steps alternate, so both see the same machine noise; the table gives the median and the
fastest of ``--steps`` steps each.

    python benchmarks/pool_backward.py --threads 1 2 --out benchmarks/results/pool_backward.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aerossl.models.efficientnet import EfficientNetLite
from aerossl.models.pool import global_avg_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import results_header, write_results

POOLS: dict[str, Callable[[Tensor], Tensor]] = {
    "adaptive_avg_pool2d": lambda h: F.adaptive_avg_pool2d(h, 1).flatten(1),
    "global_avg_pool": global_avg_pool,
}


class Top(nn.Module):
    """Lite0's units 7-9 and a 21-class head, pooling with ``pool``."""

    def __init__(self, pool: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        torch.manual_seed(0)
        net = EfficientNetLite("efficientnet_lite0", 21)
        self.units = nn.Sequential(net.stages[5], net.stages[6], net.head_conv)
        self.head = net.head
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.units(x)))


def recipe_top(pool: Callable[[Tensor], Tensor] = global_avg_pool
               ) -> tuple[Top, torch.optim.Optimizer]:
    """A channels-last :class:`Top` in training mode and the SGD optimizer of the recipe's step."""
    top = Top(pool).train().to(memory_format=torch.channels_last)
    return top, torch.optim.SGD(top.parameters(), lr=0.01, momentum=0.9)


def recipe_maps() -> list[Tensor]:
    """Banked-map stand-ins of the recipe's step: 96 weak views, then 32 labelled + 96 strong."""
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(n, 112, 14, 14, generator=gen).contiguous(
        memory_format=torch.channels_last) for n in (96, 128)]


def timed_step(run: nn.Module, opt: torch.optim.Optimizer, maps: list[Tensor]) -> float:
    """Seconds of one recipe step of ``run``: a no-autograd forward of ``maps[0]``, a forward
    and backward of ``maps[1]`` and an SGD update."""
    start = time.perf_counter()
    with torch.no_grad():
        run(maps[0])
    loss = run(maps[1]).logsumexp(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def measure(threads: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of each pooling, alternating."""
    torch.set_num_threads(threads)
    maps = recipe_maps()
    models = {name: recipe_top(pool) for name, pool in POOLS.items()}
    for pair in models.values():
        for _ in range(2):
            timed_step(*pair, maps)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(steps):
        for name, pair in models.items():
            times[name].append(timed_step(*pair, maps))
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--context", default="nothing else ran", help="what else ran meanwhile")
    p.add_argument("--out", default="benchmarks/results/pool_backward.md")
    args = p.parse_args(argv)
    rows = []
    for threads in args.threads:
        times = measure(threads, args.steps)
        base = statistics.median_high(times["adaptive_avg_pool2d"])
        for name, ts in times.items():
            median = statistics.median_high(ts)
            rows.append(f"| {threads} | `{name}` | {median:.3f} | {min(ts):.3f} | "
                        f"{100 * (1 - median / base):+.1f} % |")
            print(rows[-1], flush=True)
    head = results_header("Global pooling's gradient layout and the pretrained top's CPU step",
                          "pool_backward.py", argv=argv, meanwhile=args.context,
                          software=f"torch {torch.__version__}")
    text = (
        "\n".join(head) + "\n"
        f"Steps alternate between the two poolings in one process ({args.steps} each after 2 "
        "warm-up steps); 'saved' is the median's drop against `adaptive_avg_pool2d`.\n\n"
        "| threads | pooling | median s/step | fastest s/step | saved |\n|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )
    write_results(args.out, text, echo=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
