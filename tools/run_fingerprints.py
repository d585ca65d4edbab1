"""Fingerprints of short fixed-seed runs of every method, to check that a refactor changes no bit.

Each run (embedded demo data, 32 px, small CNN, 30 steps, seed 0) is summarised by sha256
digests of its final weights (the evaluated network), of the algorithm's state (teachers,
thresholds, ...) and of its metrics.jsonl rows without timings, and by its final accuracy.
Run it on the code before and after a change and compare:

    PYTHONPATH=OLD/src python tools/run_fingerprints.py before.json
    PYTHONPATH=NEW/src python tools/run_fingerprints.py after.json
    python tools/run_fingerprints.py --compare before.json after.json

``--drop-key NAME`` leaves an algorithm state entry out of the digest (one a change removed on
purpose); ``--rename-key OLD=NEW`` digests an entry a change renamed on purpose under its new
name (run on the code before the change). Takes about 1.5 min of one CPU core for all runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

STRONG_CONTRAST = [{"name": "color_jitter", "brightness": 0.4, "contrast": 0.4,
                    "saturation": 0.4, "hue": 0.0, "p": 0.8},
                   {"name": "random_grayscale", "p": 0.2}]


def config(algorithm: str, out: Path, steps: int = 30, **extra: Any) -> dict:
    """A small run; ``section__key=value`` overrides, ``section=value`` replaces a section."""
    cfg: dict[str, Any] = {
        "name": algorithm, "output_dir": str(out), "seed": 0,
        "data": {"root": "demo", "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": algorithm},
        "train": {"steps": steps, "batch_size": 16, "mu": 2, "eval_every": 15, "log_every": 5,
                  "progress": False, "tensorboard": False, "lr": 0.05},
        "report": [],
    }
    for key, value in extra.items():
        if "__" not in key:  # a whole section, e.g. augment
            cfg[key] = value
            continue
        section, name = key.split("__")
        cfg.setdefault(section, {})[name] = value
    return cfg


def runs(work: Path) -> dict[str, dict]:
    """The runs, by name (a teacher run and a metadata file are made in ``work`` first)."""
    import aerossl
    from aerossl.config import CONTRASTIVE, STRONG, WEAK
    from aerossl.data import demo_dataset_path, scan_folder

    augment = {"weak": WEAK, "strong": STRONG, "contrast": STRONG + STRONG_CONTRAST,
               "contrastive": CONTRASTIVE}
    dataset = scan_folder(demo_dataset_path())
    rng = np.random.default_rng(0)
    meta = work / "meta.csv"
    meta.write_text("path,lat,lon,date\n" + "".join(
        f"{f},{-40 + 3 * y + rng.normal(0, 1):.4f},{-100 + 8 * y + rng.normal(0, 1):.4f},"
        f"2020-{1 + y % 12:02d}-{rng.integers(1, 28):02d}\n"
        for f, y in zip(dataset.files, dataset.labels, strict=True)))
    teacher = aerossl.train(config("supervised", work, steps=20)).run_dir
    st = {"data__metadata": "csv", "data__metadata_file": str(meta)}
    return {
        "fixmatch": config("fixmatch", work, algorithm__threshold=0.7),
        "fixmatch_mix_da": config("fixmatch", work, algorithm__threshold=0.7,
                                  algorithm__labeled_mix="mixup", algorithm__dist_align=True,
                                  algorithm__joint_batch=True),
        "flexmatch": config("flexmatch", work),
        "freematch": config("freematch", work),
        "mixmatch": config("mixmatch", work),
        "mean_teacher": config("mean_teacher", work),
        "pseudo_label": config("pseudo_label", work, algorithm__threshold=0.5),
        "uda": config("uda", work, algorithm__threshold=0.5),
        "ccssl": config("ccssl", work, algorithm__threshold=0.5,
                        algorithm__contrast_threshold=0.5, augment=augment),
        "pi_model": config("pi_model", work),
        "vat": config("vat", work),
        "simclr": config("simclr", work, steps=10, augment=augment),
        "multilabel_fixmatch": config("multilabel_fixmatch", work, data__root="demo_multilabel"),
        "spatiotemporal": config("spatiotemporal", work, algorithm__threshold=0.6, **st),
        "spatiotemporal_flex": config("spatiotemporal", work, algorithm__selector="flexmatch",
                                      **st),
        "noisy_student": config("noisy_student", work, algorithm__teacher=str(teacher),
                                algorithm__threshold=0.2),
        "distill": config("distill", work, algorithm__teacher=str(teacher)),
        "softmatch": config("softmatch", work),
        "adamatch": config("adamatch", work, algorithm__threshold=0.6),
        "defixmatch": config("defixmatch", work, algorithm__threshold=0.6),
        "simmatch": config("simmatch", work),
    }


def digest(tensors: dict, drop: set[str], rename: dict[str, str] | None = None) -> str:
    h = hashlib.sha256()
    tensors = {(rename or {}).get(k, k): v for k, v in tensors.items()}
    for key in sorted(set(tensors) - drop):
        h.update(key.encode())
        h.update(tensors[key].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(names: list[str], drop: set[str], rename: dict[str, str]) -> dict[str, dict]:
    import aerossl
    from aerossl.engine.checkpoint import load_checkpoint  # also before aerossl.engine.checkpoint

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = runs(Path(tmp))
        for name in names or list(table):
            result = aerossl.train(table[name])
            state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
            rows = [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
                    for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
            out[name] = {
                "weights": digest(state["eval_model"], set()),
                "algorithm": digest(state["algorithm"], drop, rename),
                "metrics": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()
                                          ).hexdigest()[:16],
                "final_acc": result.final_acc,
            }
            print(name, *out[name].values(), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", help="JSON file to write")
    parser.add_argument("--runs", nargs="*", default=[], help="run names (default: all)")
    parser.add_argument("--drop-key", action="append", default=[],
                        help="algorithm state entry to leave out of the digest")
    parser.add_argument("--rename-key", action="append", default=[], metavar="OLD=NEW",
                        help="algorithm state entry a change renamed on purpose: digest it "
                        "under its new name")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.compare)
        diff = [name for name in before if before[name] != after.get(name)]
        for name in before:
            print(f"{name:22s} {'same' if name not in diff else 'DIFFERENT'}")
        return 1 if diff else 0
    if not args.output:
        parser.error("give an output file or --compare")
    rename = dict(item.split("=", 1) for item in args.rename_key)
    Path(args.output).write_text(json.dumps(fingerprint(args.runs, set(args.drop_key), rename),
                                            indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
