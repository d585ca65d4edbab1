"""The depthwise convolutions' backward in the pretrained recipe's CPU step, and alternatives.

Issue 21 (item 4) profiles the trainable top's step: its largest part is the backward of the
depthwise 5x5 convolutions. This script measures, in one process and on the same inputs, each
depthwise convolution of the recipe's top (EfficientNet-Lite0's units 7-9, see
``benchmarks/pool_backward.py``) at the shape it has in a step (32 labelled + 96 strong views
with autograd, channels-last): its forward, the input gradient and the weight gradient as
PyTorch computes them (``aten.convolution_backward``, oneDNN on CPU), against a whole step of
the top, and two other ways of computing the weight gradient:

- ``grouped``: the weight gradient as a grouped convolution of the padded input (batch moved
  to channels) with the output gradient as the kernel, one group per channel;
- ``fused``: the 25 (or 9) shifted products of input and output gradient summed over batch and
  space, fused by ``torch.compile`` (TorchInductor's C++ backend) into one reduction.

Each alternative's largest absolute deviation from PyTorch's weight gradient (not scaled by
the gradient's size) is printed beside its time.
Times are medians of ``--repeats`` calls after two warm-up calls.

    python benchmarks/depthwise_backward.py --threads 1 2 \
        --out benchmarks/results/depthwise_backward.md
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_backward import recipe_maps, recipe_top, timed_step
from report import results_header, write_results

BACKWARD = torch.ops.aten.convolution_backward


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` calls, after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def same_padding(conv: nn.Conv2d, x: Tensor) -> tuple[Tensor, int]:
    """``x`` with the odd extra pixel of TensorFlow's padding, and the symmetric padding, as
    :class:`aerossl.models.efficientnet.SameConv2d` convolves it (square maps)."""
    k, s, size = conv.kernel_size[0], conv.stride[0], x.shape[-1]
    pad = max((math.ceil(size / s) - 1) * s + k - size, 0)
    if pad % 2:
        x = F.pad(x, [0, 1, 0, 1]).contiguous(memory_format=torch.channels_last)
    return x, pad // 2


def depthwise_inputs(top: nn.Module, maps: Tensor
                     ) -> list[tuple[nn.Conv2d, Tensor, int, Tensor]]:
    """Each depthwise convolution of ``top`` with its (odd-padded) input, its symmetric
    padding and its output gradient in a step."""
    convs = [m for m in top.modules() if isinstance(m, nn.Conv2d) and m.groups > 1
             and m.groups == m.in_channels]
    seen: dict[nn.Conv2d, list[Tensor]] = {c: [] for c in convs}
    hooks = [c.register_forward_hook(lambda m, i, o: seen[m].extend([i[0].detach(), o]))
             for c in convs]
    loss = top(maps).logsumexp(1).mean()
    grads = torch.autograd.grad(loss, [seen[c][1] for c in convs])
    for h in hooks:
        h.remove()
    return [(c, *same_padding(c, seen[c][0]), g.contiguous(memory_format=torch.channels_last))
            for c, g in zip(convs, grads, strict=True)]


def fused_weight_grad(x: Tensor, go: Tensor, k: int, stride: int, pad: int) -> Tensor:
    """Depthwise weight gradient as the sum over batch and space of shifted products."""
    xp = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)
    g = go.permute(0, 2, 3, 1)
    h, w = g.shape[1], g.shape[2]
    taps = [(xp[:, i:i + stride * h:stride, j:j + stride * w:stride, :] * g).sum((0, 1, 2))
            for i in range(k) for j in range(k)]
    return torch.stack(taps, 1).reshape(-1, 1, k, k)


def grouped_weight_grad(x: Tensor, go: Tensor, k: int, stride: int, pad: int) -> Tensor:
    """Depthwise weight gradient as one grouped convolution (stride 1 only)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad)).transpose(0, 1).reshape(1, c * n, h + 2 * pad,
                                                                w + 2 * pad)
    return F.conv2d(xp, go.transpose(0, 1), groups=c).reshape(c, 1, k, k)


def measure(threads: int, repeats: int) -> tuple[list[str], float, dict[str, float]]:
    """Table rows per depthwise layer, the step's milliseconds and the summed times."""
    torch.set_num_threads(threads)
    top, opt = recipe_top()
    maps = recipe_maps()
    step_ms = median_ms(lambda: timed_step(top, opt, maps), repeats)
    rows, totals = [], {"forward": 0.0, "grad_input": 0.0, "grad_weight": 0.0, "fused": 0.0}
    fused = torch.compile(fused_weight_grad, dynamic=False)
    for conv, x, p, go in depthwise_inputs(top, maps[1]):
        k, s, c = conv.kernel_size[0], conv.stride[0], conv.in_channels
        w = conv.weight.detach()

        def grads(mask: list[bool], x=x, go=go, w=w, s=s, p=p, c=c) -> tuple:
            return BACKWARD(go, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], c, mask)

        ref = grads([False, True, False])[1]
        t = {
            "forward": median_ms(lambda x=x, w=w, s=s, p=p, c=c: F.conv2d(
                x, w, stride=s, padding=p, groups=c), repeats),
            "grad_input": median_ms(lambda: grads([True, False, False]), repeats),
            "grad_weight": median_ms(lambda: grads([False, True, False]), repeats),
            "fused": median_ms(lambda x=x, go=go, k=k, s=s, p=p: fused(x, go, k, s, p), repeats),
        }
        dev_fused = (fused(x, go, k, s, p) - ref).abs().max().item()
        if s == 1:
            t["grouped"] = median_ms(lambda x=x, go=go, k=k, p=p: grouped_weight_grad(
                x, go, k, 1, p), max(1, repeats // 4))
            dev = (grouped_weight_grad(x, go, k, 1, p) - ref).abs().max().item()
            grouped = f"{t['grouped']:.1f} ({dev:.1e})"
        else:
            grouped = "-"
        for key in totals:
            totals[key] += t[key]
        gflop = 2 * go.numel() * k * k / 1e9
        rows.append(f"| {threads} | {tuple(x.shape)} k{k} s{s} | {t['forward']:.1f} | "
                    f"{t['grad_input']:.1f} | {t['grad_weight']:.1f} "
                    f"({gflop / t['grad_weight'] * 1000:.1f} GFLOP/s) | {grouped} | "
                    f"{t['fused']:.1f} ({dev_fused:.1e}) |")
        print(rows[-1], flush=True)
    return rows, step_ms, totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--context", default="nothing else ran", help="what else ran meanwhile")
    p.add_argument("--out", default="benchmarks/results/depthwise_backward.md")
    args = p.parse_args(argv)
    rows, summary = [], []
    for threads in args.threads:
        layer_rows, step_ms, totals = measure(threads, args.repeats)
        rows += layer_rows
        share = 100 * (totals["grad_weight"] + totals["grad_input"]) / step_ms
        summary.append(
            f"| {threads} | {step_ms:.0f} | {totals['forward']:.0f} | {totals['grad_input']:.0f} | "
            f"{totals['grad_weight']:.0f} | {share:.0f} % | {totals['fused']:.0f} |")
    text = "\n".join([
        *results_header("Depthwise convolutions' backward in the pretrained recipe's step",
                        "depthwise_backward.py", argv=argv, meanwhile=args.context,
                        software=f"torch {torch.__version__}"),
        "Per step (milliseconds, medians): a whole step of the top (96 weak views without "
        "autograd, 32 + 96 views forward and backward, SGD update) and the sums over its "
        "depthwise convolutions of the 128-view forward and of the two gradients as PyTorch "
        "computes them; `share`: both gradients' part of the step; `fused`: the summed weight "
        "gradient computed the fused way instead.",
        "",
        "| threads | step ms | depthwise forward | grad input | grad weight | share | fused |",
        "|---|---|---|---|---|---|---|",
        *summary,
        "",
        "Per depthwise layer (milliseconds; the input shape as N, C, H, W; the weight "
        "gradient's achieved GFLOP/s; the alternatives' largest absolute deviation from PyTorch's "
        "weight gradient in brackets, not scaled by the gradient's size):",
        "",
        "| threads | layer | forward | grad input | grad weight | grouped | fused |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    write_results(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
