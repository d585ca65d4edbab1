"""Active labelling on UC Merced: ``aerossl suggest-labels`` vs random picks, per round.

The hidden UC Merced labels stand in for the person who labels. Per seed: a run trained on
``--start-per-class`` labels per class (round 0); then ``--rounds`` rounds each add
``--add / --rounds`` labels, chosen by the acquisition rule of :mod:`aerossl.runs.suggest` from the
previous round's run, or at random from the same pool; each round trains a new run from
scratch on the grown labelled set (same base config, method, steps and test split), and its
test accuracy is recorded. Both strategies share round 0.

The base config is a parameter (``--config``, a shipped name or YAML, plus ``--overrides``),
e.g. the fast pretrained path ``model.name=efficientnet_lite0 model.pretrained=imagenet``.

    PYTHONPATH=src python benchmarks/active_labels.py --data /work/shared/data/ucmerced \
        --config ucmerced_supervised --seeds 0 1 2 --rounds 3 --add 42 \
        --out benchmarks/results/active_labels
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

import aerossl
from aerossl.runs.suggest import suggest_labels


def split_names(path: Path) -> list[str]:
    """Names in a split file."""
    return [n.strip() for n in path.read_text().splitlines()
            if n.strip() and not n.startswith("#")]


def train(cfg: dict, name: str, labeled: Path | None, test: Path | None
          ) -> tuple[Path, float]:
    """Train one run of the base config; its run folder and final test accuracy."""
    cfg = json.loads(json.dumps(cfg))
    cfg["name"] = name
    if labeled is not None:
        cfg["data"]["labeled_names_file"] = str(labeled)
        cfg["data"]["test_names_file"] = str(test)
    t = time.perf_counter()
    res = aerossl.train(cfg)
    print(f"  {name}: accuracy {res.final_acc:.4f} ({time.perf_counter() - t:.0f} s)",
          file=sys.stderr, flush=True)
    return res.run_dir, float(res.final_acc)


def random_pick(run_dir: Path, k: int, seed: int, out: Path) -> Path:
    """``labeled.txt`` with ``k`` random images of the run's unlabelled pool added."""
    from aerossl.engine.data import read_dataset
    from aerossl.runs.loader import load_run_config

    dataset, _ = read_dataset(load_run_config(run_dir).data)
    labeled = split_names(run_dir / "split" / "labeled.txt")
    test = set(split_names(run_dir / "split" / "test.txt"))
    pool = sorted(set(dataset.files) - test - set(labeled))
    picks = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "labeled.txt"
    path.write_text("".join(f"{n}\n" for n in labeled + [pool[i] for i in sorted(picks)]))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="UC Merced folder of class folders")
    p.add_argument("--config", default="ucmerced_supervised", help="base config")
    p.add_argument("--overrides", nargs="*", default=[], help="dotted.key=value of the base")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--start-per-class", type=int, default=2)
    p.add_argument("--add", type=int, default=42, help="labels added over all rounds")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--diversity", type=float, default=0.5)
    p.add_argument("--workdir", default="runs/active_labels")
    p.add_argument("--out", default="benchmarks/results/active_labels",
                   help="results prefix (.md, .json, .png)")
    p.add_argument("--note", default="pinned to one core with `taskset`, torch threads 1",
                   help="how it ran and what else ran on the machine (goes in the table)")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="train nothing: merge the .json results of runs made on other seeds "
                        "(e.g. one process per core) into one table")
    args = p.parse_args()
    if args.merge:
        merge(args)
        return
    if args.add % args.rounds:
        p.error("--add must be a multiple of --rounds")
    per_round = args.add // args.rounds
    work = Path(args.workdir)
    load_before = os.getloadavg()
    start = time.perf_counter()
    results: dict[str, dict[int, list[float]]] = {"rule": {}, "random": {}}
    for seed in args.seeds:
        cfg = aerossl.load_config(aerossl.find_config(args.config), [
            f"data.root={args.data}", f"seed={seed}",
            f"data.labels_per_class={args.start_per_class}", f"output_dir={work}",
            "train.progress=false", "train.tensorboard=false", "report=[]", *args.overrides,
        ]).to_dict()
        print(f"seed {seed}", file=sys.stderr)
        run0, acc0 = train(cfg, f"s{seed}_r0", None, None)
        test = run0 / "split" / "test.txt"
        start_labels = len(split_names(run0 / "split" / "labeled.txt"))
        base_cfg = {**cfg, "data": {**cfg["data"], "mean": None, "std": None}}
        for strategy in ("rule", "random"):
            results[strategy].setdefault(0, []).append(acc0)
            prev = run0
            for r in range(1, args.rounds + 1):
                out = work / f"s{seed}_{strategy}_picks{r}"
                if strategy == "rule":
                    split = suggest_labels(prev, per_round, out, views=args.views,
                                           diversity=args.diversity, seed=seed).files["split"]
                else:
                    split = random_pick(prev, per_round, 1000 * seed + r, out)
                prev, acc = train(base_cfg, f"s{seed}_{strategy}_r{r}", split, test)
                results[strategy].setdefault(r, []).append(acc)
    minutes = (time.perf_counter() - start) / 60
    write_results(args, results, start_labels, per_round,
                  f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
                  f"{minutes:.1f} min in all")


def merge(args: argparse.Namespace) -> None:
    """One table from the JSON results of several processes (same settings, other seeds)."""
    parts = [json.loads(Path(f).read_text()) for f in args.merge]
    same = ("config", "overrides", "start_per_class", "add", "rounds", "views", "diversity")
    for key in same:
        values = {json.dumps(part["args"][key]) for part in parts}
        if len(values) > 1:
            raise SystemExit(f"--merge: the parts differ in {key}: {sorted(values)}")
    first = parts[0]["args"]
    for key in same:
        setattr(args, key, first[key])
    args.seeds = [s for part in parts for s in part["args"]["seeds"]]
    results: dict[str, dict[int, list[float]]] = {"rule": {}, "random": {}}
    for part in parts:
        for strategy, rounds in part["results"].items():
            for r, accs in rounds.items():
                results[strategy].setdefault(int(r), []).extend(accs)
    timing = "; ".join(f"{Path(f).name}: seeds {part['args']['seeds']}, {part['timing']}"
                       for f, part in zip(args.merge, parts, strict=True))
    args.parts = [part["command"] for part in parts]
    write_results(args, results, parts[0]["start_labels"], parts[0]["per_round"], timing)


def write_results(args: argparse.Namespace, results: dict, n0: int, per_round: int,
                  timing: str) -> None:
    """Markdown table, JSON and plot under ``args.out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rounds = sorted(results["rule"])
    lines = ["| round | labels | rule: mean ± sd | random: mean ± sd | rule − random (paired) | "
             "rule per seed | random per seed |", "|---|---|---|---|---|---|---|"]
    for r in rounds:
        a, b = np.array(results["rule"][r]), np.array(results["random"][r])
        d = a - b
        sd_a, sd_b = (x.std(ddof=1) if len(x) > 1 else 0.0 for x in (a, b))
        lines.append(f"| {r} | {n0 + r * per_round} | {a.mean():.3f} ± {sd_a:.3f} | "
                     f"{b.mean():.3f} ± {sd_b:.3f} | "
                     f"{d.mean():+.3f} | {' / '.join(f'{v:.3f}' for v in a)} | "
                     f"{' / '.join(f'{v:.3f}' for v in b)} |")
    command = "PYTHONPATH=src python benchmarks/active_labels.py " + shlex.join(sys.argv[1:])
    text = "\n".join([
        "# Active labelling on UC Merced: suggest-labels vs random",
        "",
        "Written by `benchmarks/active_labels.py` (see its docstring). Hidden UC Merced labels",
        f"stand in for the labeller: start from {args.start_per_class} labels per class ({n0}), "
        f"add {args.add} in {args.rounds} rounds of {per_round}, by the acquisition rule of",
        "`aerossl suggest-labels` (uncertainty of the mean prediction over "
        f"{args.views} weak views, balanced over predicted classes, diversity {args.diversity})",
        "or at random from the same pool; every round is a new run from scratch on the grown",
        "set, same config, steps and test split (50% of each class). Test accuracy per round;",
        f"seeds {', '.join(map(str, args.seeds))} (split, initial labels, training, random picks).",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        *(f"  - part: `{c}`" for c in getattr(args, "parts", [])),
        f"- base config: `{args.config}` with `{' '.join(args.overrides) or '(no overrides)'}`",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, no GPU; {args.note}",
        f"- time: {timing}",
        "",
        *lines,
        "",
        f"![accuracy per round]({out.name}.png)",
        "",
    ])
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "per_round": per_round, "start_labels": n0, "timing": timing,
         "command": command,
         "results": results}, indent=1))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    x = [n0 + r * per_round for r in rounds]
    for strategy, color in (("rule", "tab:blue"), ("random", "tab:orange")):
        acc = np.array([results[strategy][r] for r in rounds])  # (rounds, seeds)
        for s in range(acc.shape[1]):
            ax.plot(x, acc[:, s], color=color, alpha=0.3, lw=1)
        ax.plot(x, acc.mean(1), color=color, lw=2, marker="o",
                label="suggest-labels rule" if strategy == "rule" else "random")
    ax.set_xlabel("labelled images")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"UC Merced, {args.config} {' '.join(args.overrides)}"[:70], fontsize=8)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print(text)


if __name__ == "__main__":
    main()
