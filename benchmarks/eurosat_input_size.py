"""EuroSAT RGB (USB's split): frozen EfficientNet-Lite0 features + logistic regression at
several input sizes.

EuroSAT's chips are 64 px; the recipe resizes them (``data.image_size: auto`` picks 128 px).
How much the ImageNet encoder's frozen features gain from a larger input is measured here
without training: per size, the pooled features of the labelled and test images, then
scikit-learn's ``LogisticRegression`` on the labelled ones, for every ``--labels`` x ``--seeds``
(the labelled images drawn from USB's pool per class with ``data.split_seed`` = seed, as in
``eurosat_usb.py``; the split files come from its ``write_split``).

    python benchmarks/eurosat_input_size.py --data /path/to/EuroSAT/2750 --sizes 64 128 224 \
        --out benchmarks/results/eurosat_input_size.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eurosat_usb import write_split
from pretrained_ucmerced import frozen_extractor
from report import command, cpu_name


def size_rows(data: Path, split_dir: Path, size: int, labels: list[int], seeds: list[int],
              threads: int) -> tuple[dict[int, list[float]], float]:
    """Test accuracy (%) per labels-per-class budget and seed at one input size, and the
    minutes it took (decoding, when the image cache is cold, and extraction)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from aerossl.engine.data import load_data
    from aerossl.engine.evaluate import predict
    from aerossl.validate import load_config

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    features: dict[int, np.ndarray] = {}
    net = None
    accs: dict[int, list[float]] = {}
    for per_class in labels:
        for seed in seeds:
            cfg = load_config(None, [f"data.root={data}", f"data.image_size={size}",
                                     f"data.train_pool_file={split_dir / 'pool.txt'}",
                                     f"data.test_names_file={split_dir / 'test.txt'}",
                                     f"data.labels_per_class={per_class}"])
            bundle = load_data(cfg.data, seed)
            split = bundle.split
            need = np.setdiff1d(np.union1d(split.labeled, split.test),
                                np.fromiter(features, dtype=np.int64))
            if net is None:
                net = frozen_extractor("efficientnet_lite0", bundle.num_classes, bundle.channels)
            if len(need):
                out = predict(net, bundle.images, need, 64, torch.device("cpu")).numpy()
                features.update(zip(need.tolist(), out, strict=True))
            y = bundle.labels.numpy()

            def rows(idx: np.ndarray) -> np.ndarray:
                return np.stack([features[int(i)] for i in idx])

            clf = LogisticRegression(max_iter=5000).fit(rows(split.labeled), y[split.labeled])
            acc = float((clf.predict(rows(split.test)) == y[split.test]).mean()) * 100
            accs.setdefault(per_class, []).append(acc)
            print(f"{size} px, {per_class} labels/class, seed {seed}: {acc:.1f}", flush=True)
    return accs, (time.perf_counter() - t0) / 60


def main() -> None:
    """Parse arguments, measure every size, write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="EuroSAT RGB class folders (2750)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    p.add_argument("--labels", type=int, nargs="+", default=[2, 4], help="labels per class")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--split-dir", type=Path, default=Path("runs/eurosat_split"))
    p.add_argument("--out", default="benchmarks/results/eurosat_input_size.md")
    p.add_argument("--other-load", default="not stated")
    args = p.parse_args()
    write_split(args.data, args.split_dir)
    lines = [
        "# EuroSAT RGB: frozen Lite0 features + logistic regression by input size", "",
        f"- Date: {dt.date.today()}; machine: {cpu_name()}, {args.threads} thread(s), no GPU.",
        f"- Command: `{command('eurosat_input_size.py')}`",
        f"- Other load on the machine: {args.other_load}",
        "- USB's split (per class, sorted names: first 80 % pool, last 20 % test, 5,400 test "
        "images); labelled images drawn from the pool per class, split seed = seed; accuracy "
        "on the test images; minutes: per size, image decoding (when not yet cached) and "
        "feature extraction of the labelled and test images.", "",
        "| input px | labels/class | accuracy (mean ± std) | per seed | minutes |",
        "|---|---|---|---|---|",
    ]
    for size in args.sizes:
        accs, minutes = size_rows(args.data, args.split_dir, size, args.labels, args.seeds,
                                  args.threads)
        for per_class, values in accs.items():
            a = np.array(values)
            spread = a.std(ddof=1) if len(a) > 1 else 0.0
            lines.append(f"| {size} | {per_class} | {a.mean():.1f} ± {spread:.1f} | "
                         f"{', '.join(f'{v:.1f}' for v in a)} | {minutes:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
