"""Pretrained EfficientNet-Lite0 on UC Merced: frozen features + logistic regression vs the
shipped pretrained recipes (supervised and SSL), same split and labels per seed.

Rows:
  (a) ``logreg``: the frozen ImageNet network's pooled features of the plain images and
      scikit-learn's ``LogisticRegression`` on the labelled ones (what anyone can do without
      aerossl); its minutes are feature extraction plus fitting.
  (a') ``--propagate``: label propagation (Zhou et al., NeurIPS 2003) on the same features, the
      graph over the training pool only (labelled and unlabelled images; the test images are
      never in it): a cosine k-nearest-neighbour graph, the labelled images' one-hot rows
      spread with ``alpha`` 0.99, then each test image scored by its k nearest pool images'
      propagated rows (inductive). Also reports the propagated labels' accuracy on the
      unlabelled pool: how good the pseudo-labels a frozen-feature graph gives would be.
  (b), (c): each ``--configs`` recipe as its own ``aerossl train`` process (one at a time,
      ``--threads`` threads); minutes are the process's wall time, view-bank build included when
      the bank was not yet cached (the ``bank min`` column says how much of it was the bank).

    python benchmarks/pretrained_ucmerced.py --data ../shared/data/ucmerced --seeds 0 1 2
    python benchmarks/pretrained_ucmerced.py --data ../shared/data/ucmerced --seeds 0 1 2 \
        --labels 1 2 4 10 all --out benchmarks/results/pretrained_budgets_ucmerced.md

Writes a Markdown table (mean and spread over seeds, per-seed values), a JSON of every row,
and a plot of accuracy against minutes (or against labels per class with several ``--labels``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, cpu_name

DEFAULT_CONFIGS = ("ucmerced_pretrained_supervised", "ucmerced_pretrained_fixmatch")


_FEATURES: dict = {}  # pooled features of every image, extracted once per process


def frozen_extractor(model: str, num_classes: int, channels: int) -> torch.nn.Module:
    """``model`` with its ImageNet weights and their input normalisation, as a module whose
    output is the pooled features (to batch through ``aerossl.engine.evaluate.predict``,
    which runs it in eval mode)."""
    from aerossl.algorithms.base import Features
    from aerossl.models import create_model
    from aerossl.models.normalize import Normalized
    from aerossl.models.pretrained import load_pretrained, pretrained_source

    src = pretrained_source(model, "imagenet")
    backbone = create_model(model, num_classes, channels)
    load_pretrained(backbone, model, "imagenet")
    return Features(Normalized(backbone, [src.mean] * 3, [src.std] * 3))


def logreg_rows(args: argparse.Namespace, labels: str) -> list[dict]:
    """Row (a) for every seed: pooled features of the frozen pretrained network, then
    logistic regression on the labelled images."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from aerossl.engine.data import load_data
    from aerossl.engine.evaluate import predict
    from aerossl.validate import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config(None, [f"data.root={args.data}", f"data.image_size={args.image_size}",
                             f"data.labels_per_class={'null' if labels == 'all' else labels}"])
    rows = []
    features, extract_min = _FEATURES.get("features"), _FEATURES.get("minutes", 0.0)
    for seed in args.seeds:
        data = load_data(cfg.data, seed)
        if features is None:  # the plain images' features do not depend on labels or seed
            t0 = time.perf_counter()
            net = frozen_extractor(args.model, data.num_classes, data.channels)
            features = predict(net, data.images, np.arange(len(data.labels)), 64,
                               torch.device("cpu")).numpy()
            extract_min = (time.perf_counter() - t0) / 60
            _FEATURES.update(features=features, minutes=extract_min)
        t0 = time.perf_counter()
        y = data.labels.numpy()
        clf = LogisticRegression(max_iter=5000).fit(features[data.split.labeled],
                                                    y[data.split.labeled])
        acc = float((clf.predict(features[data.split.test]) == y[data.split.test]).mean())
        unlabeled = np.setdiff1d(data.split.unlabeled, data.split.labeled)
        pool_acc = float((clf.predict(features[unlabeled]) == y[unlabeled]).mean())
        minutes = extract_min + (time.perf_counter() - t0) / 60
        rows.append({"method": "logreg (frozen features)", "seed": seed, "labels": labels,
                     "acc": acc, "pool_acc": pool_acc, "minutes": minutes, "bank_minutes": 0.0,
                     "steps": 0})
        print(f"logreg seed {seed} labels {labels}: {acc:.4f} ({minutes:.1f} min)", flush=True)
    return rows


def propagate(features: np.ndarray, labeled: np.ndarray, labels: np.ndarray, pool: np.ndarray,
              test: np.ndarray, num_classes: int, k: int = 10, alpha: float = 0.99,
              power: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Label propagation over the pool's cosine k-NN graph (edge weight ``cos**power``,
    symmetric, normalised: ``aerossl.algorithms.graph``, the ``label_propagation`` method's);
    returns the propagated class scores of the pool and of the test images (each a weighted
    sum of its k nearest pool images' scores)."""
    import torch

    from aerossl.algorithms.graph import propagated_scores

    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    xp = x[pool]
    where = torch.as_tensor(np.searchsorted(pool, labeled))
    scores = propagated_scores(torch.as_tensor(xp), where, torch.as_tensor(labels), num_classes,
                               k, alpha, power, tol=1e-10, max_iter=1000).numpy()
    scores /= np.maximum(scores.sum(1, keepdims=True), 1e-12)
    sim = x[test] @ xp.T
    tidx = np.argpartition(-sim, k, axis=1)[:, :k]
    tw = np.clip(np.take_along_axis(sim, tidx, axis=1), 0, None) ** power
    return scores, np.einsum("tk,tkc->tc", tw, scores[tidx])


def propagate_rows(args: argparse.Namespace, labels: str) -> list[dict]:
    """Row (a') for every seed, on the features row (a) extracted."""
    from aerossl.engine.data import load_data
    from aerossl.validate import load_config

    if "features" not in _FEATURES:
        raise SystemExit("--propagate needs row (a)'s features: drop --no-logreg")
    features, extract_min = _FEATURES["features"], _FEATURES["minutes"]
    cfg = load_config(None, [f"data.root={args.data}", f"data.image_size={args.image_size}",
                             f"data.labels_per_class={'null' if labels == 'all' else labels}"])
    rows = []
    for seed in args.seeds:
        data = load_data(cfg.data, seed)
        t0 = time.perf_counter()
        y = data.labels.numpy()
        split = data.split
        pool = np.union1d(split.labeled, split.unlabeled)
        pool_scores, test_scores = propagate(features, split.labeled, y[split.labeled], pool,
                                             split.test, data.num_classes)
        acc = float((test_scores.argmax(1) == y[split.test]).mean())
        unlabeled = np.setdiff1d(pool, split.labeled)
        where = np.searchsorted(pool, unlabeled)
        pool_acc = float((pool_scores[where].argmax(1) == y[unlabeled]).mean())
        minutes = extract_min + (time.perf_counter() - t0) / 60
        rows.append({"method": "label propagation (frozen features)", "seed": seed,
                     "labels": labels, "acc": acc, "pool_acc": pool_acc, "minutes": minutes,
                     "bank_minutes": 0.0, "steps": 0})
        print(f"propagation seed {seed} labels {labels}: test {acc:.4f}, unlabelled pool "
              f"{pool_acc:.4f}", flush=True)
    return rows


def train_rows(args: argparse.Namespace, config: str, labels: str) -> list[dict]:
    """One ``aerossl train`` process per seed (resumed when stopped, skipped when done)."""
    rows = []
    for seed in args.seeds:
        name = f"{config}-l{labels}-s{seed}"
        run_dir = Path(args.output_dir) / name
        if not (run_dir / "summary.json").is_file():
            cmd = [sys.executable, "-m", "aerossl.cli", "train", config, f"data.root={args.data}",
                   f"seed={seed}", f"data.split_seed={seed}", f"name={name}",
                   f"output_dir={args.output_dir}", f"train.num_threads={args.threads}",
                   f"data.labels_per_class={'null' if labels == 'all' else labels}",
                   "train.progress=false", *args.overrides]
            if (run_dir / "checkpoints" / "last.pt").is_file():
                cmd = [sys.executable, "-m", "aerossl.cli", "train", "--resume", str(run_dir),
                       f"train.num_threads={args.threads}", "train.progress=false"]
            t0 = time.perf_counter()
            log = Path(args.output_dir) / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as f:
                subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
            (run_dir / "wall_minutes.txt").write_text(f"{(time.perf_counter() - t0) / 60:.3f}")
        summary = json.loads((run_dir / "summary.json").read_text())
        wall = run_dir / "wall_minutes.txt"
        rows.append({"method": config.removeprefix("ucmerced_"), "seed": seed, "labels": labels,
                     "acc": summary["final_acc"], "steps": summary["steps"],
                     "minutes": float(wall.read_text()) if wall.is_file() else summary["minutes"],
                     "bank_minutes": summary.get("bank_minutes", 0.0)})
        print(f"{name}: {rows[-1]['acc']:.4f} ({rows[-1]['minutes']:.1f} min)", flush=True)
    return rows


def write_table(rows: list[dict], args: argparse.Namespace) -> None:
    """Markdown table, JSON rows and the plot."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    lines = [
        f"# {args.title}", "",
        f"- Date: {dt.date.today()}; machine: {cpu_name()}, {args.threads} thread(s) per run, "
        "one run at a time, no GPU.",
        f"- Command: `{command('pretrained_ucmerced.py')}`",
        f"- Other load on the machine: {args.other_load}",
        f"- Data: UC Merced (2,100 images, 21 classes), 50/50 split per class, split seed = seed; "
        f"images at {args.image_size} px; model {args.model} with ImageNet weights.",
        "- minutes: wall time of the run as run (view bank built in that run included; "
        "`bank min` is that part: 0 when the bank was already cached by an earlier run).", "",
        "| labels/class | method | accuracy (mean ± std) | per seed | minutes (mean) | "
        "bank min (max) | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    pooled = any("pool_acc" in r for r in rows)
    if pooled:  # frozen-feature rows: how right their labels are on the unlabelled pool too
        lines[-2] += " unlabelled pool (mean) |"
        lines[-1] += "---|"
    keys = list(dict.fromkeys((r["labels"], r["method"]) for r in rows))
    for labels, method in keys:
        sel = [r for r in rows if r["labels"] == labels and r["method"] == method]
        accs = np.array([r["acc"] for r in sel]) * 100
        spread = accs.std(ddof=1) if len(accs) > 1 else 0.0
        lines.append(
            f"| {labels} | {method} | {accs.mean():.1f} ± {spread:.1f}"
            f" | {', '.join(f'{a:.1f}' for a in accs)} | "
            f"{np.mean([r['minutes'] for r in sel]):.1f} | "
            f"{max(r['bank_minutes'] for r in sel):.1f} | {sel[0]['steps']} |"
            + (f" {np.mean([r['pool_acc'] for r in sel]) * 100:.1f} |" if "pool_acc" in sel[0]
               else " |" if pooled else ""))
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(rows, keys, out.with_suffix(".png"), len(args.labels) > 1)


def _plot(rows: list[dict], keys: list, path: Path, by_labels: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    methods = list(dict.fromkeys(m for _, m in keys))
    for method in methods:
        sel = [r for r in rows if r["method"] == method]
        if by_labels:
            labels = list(dict.fromkeys(r["labels"] for r in sel))
            xs = [105 if lab == "all" else int(lab) for lab in labels]  # "all": 50 per class
            acc = [[r["acc"] * 100 for r in sel if r["labels"] == lab] for lab in labels]
            ax.errorbar(xs, [np.mean(a) for a in acc], yerr=[np.std(a) for a in acc],
                        marker="o", capsize=3, label=method)
        else:
            ax.errorbar(np.mean([r["minutes"] for r in sel]),
                        np.mean([r["acc"] * 100 for r in sel]),
                        yerr=np.std([r["acc"] * 100 for r in sel]),
                        xerr=np.std([r["minutes"] for r in sel]), marker="o", capsize=3,
                        label=method)
    if by_labels:
        ax.set_xscale("log")
        ax.set_xlabel("labelled images per class (log; 'all' = 50)")
    else:
        ax.set_xlabel("wall minutes per run (2-core CPU)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    """Parse arguments, run, write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="UC Merced class folders")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--labels", nargs="+", default=["4"], help="labels per class, or 'all'")
    p.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS),
                   help="recipes to train (none: the logistic-regression rows only)")
    p.add_argument("--no-logreg", action="store_true", help="skip row (a)")
    p.add_argument("--propagate", action="store_true", help="add row (a'): label propagation")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output-dir", default="runs/bench-pretrained")
    p.add_argument("--out", default="benchmarks/results/pretrained_ucmerced.md")
    p.add_argument("--title", default="Pretrained EfficientNet-Lite0 on UC Merced")
    p.add_argument("--other-load", default="not stated")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every training run")
    args = p.parse_args()
    rows: list[dict] = []
    for labels in args.labels:
        if not args.no_logreg:
            rows += logreg_rows(args, labels)
        if args.propagate:
            rows += propagate_rows(args, labels)
        for config in args.configs:
            rows += train_rows(args, config, labels)
        write_table(rows, args)


if __name__ == "__main__":
    main()
