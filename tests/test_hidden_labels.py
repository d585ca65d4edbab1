"""No training step can see the hidden labels of the unlabelled images.

Two runs of every registered algorithm read the same images with the same split (from split
files) from two manifests that differ only in the labels of the unlabelled-only images: every
one of those labels is changed in the second. Losses, weights and algorithm state must agree
to the bit; only the engine's scores of the pseudo-labels against the hidden labels differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEMO_CLASSES, read_metrics

import aerossl
from aerossl.algorithms import Batch, algorithm_names
from aerossl.config import CONTRASTIVE, STRONG, WEAK
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.engine.trainer import Trainer
from aerossl.validate import config_from_dict

#: values the engine computes from the hidden labels (for the log only)
HIDDEN_SCORES = ("pseudo_acc", "pseudo_acc_all", "pseudo_precision_pos", "pseudo_precision_neg",
                 "student_acc_strong", "pseudo_label_acc")

#: per algorithm: config overrides (section -> values) beyond the common small run
OVERRIDES: dict[str, dict] = {
    "fixmatch": {"algorithm": {"threshold": 0.5}},
    "flexmatch": {"algorithm": {"threshold": 0.5}},
    "pseudo_label": {"algorithm": {"threshold": 0.5}},
    "uda": {"algorithm": {"threshold": 0.5}},
    "ccssl": {"algorithm": {"threshold": 0.5, "contrast_threshold": 0.5},
              "augment": {"weak": WEAK, "strong": STRONG, "contrast": STRONG}},
    "simclr": {"augment": {"weak": WEAK, "contrastive": CONTRASTIVE}},
    "spatiotemporal": {"algorithm": {"threshold": 0.5}, "data": {"metadata": "csv"}},
    "noisy_student": {"algorithm": {"threshold": 0.2}},
    "multilabel_fixmatch": {"data": {"task": "multilabel"},
                            "algorithm": {"pos_threshold": 0.5}},
}


def _files(root: Path) -> list[tuple[str, int]]:
    """(name, class) of every image, named as the dataset names them: relative to the folder
    that holds both the images and the manifests (the manifests list absolute paths)."""
    return [(f"{root.name}/{name}/{p.name}", c) for c, name in enumerate(DEMO_CLASSES)
            for p in sorted((root / name).iterdir())]


@pytest.fixture(scope="module")
def dataset(five_classes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Manifests (true and with every hidden label changed), split files, metadata."""
    out = tmp_path_factory.mktemp("hidden")
    files = _files(five_classes)
    per_class: dict[int, list[str]] = {}
    for f, c in files:
        per_class.setdefault(c, []).append(f)
    labeled = [f for c in per_class for f in per_class[c][:3]]
    test = [f for c in per_class for f in per_class[c][30:]]
    hidden = {f for f, _ in files} - set(labeled) - set(test)
    (out / "labeled.txt").write_text("\n".join(labeled) + "\n")
    (out / "test.txt").write_text("\n".join(test) + "\n")

    def manifest(name: str, shift: int, multilabel: bool) -> Path:
        rows = ["path,labels"]
        for i, (f, c) in enumerate(files):
            k = (c + shift) % 5 if f in hidden else c
            tags = [DEMO_CLASSES[k]]
            if multilabel:  # a second label: 'even'/'odd' position, swapped when hidden
                tags.append("even" if (i % 2 == 0) != (f in hidden and shift > 0) else "odd")
            rows.append(f"{five_classes.parent / f},{';'.join(tags)}")
        path = out / f"{name}.csv"
        path.write_text("\n".join(rows) + "\n")
        return path

    rows = [f"{f},{-40 + 20 * c},{-100 + 50 * c},2020-0{1 + c}-15" for f, c in files]
    meta = out / "meta.csv"
    meta.write_text("path,lat,lon,date\n" + "\n".join(rows) + "\n")
    teacher = aerossl.train(_config(out, out / "teacher", "supervised", {
        "data": {"manifest": str(manifest("true_mc", 0, False)),
                 "labeled_names_file": str(out / "labeled.txt"),
                 "test_names_file": str(out / "test.txt")},
    }))
    return {"out": out, "meta": meta, "teacher": teacher.run_dir, "hidden": len(hidden),
            "manifests": {(shift, ml): manifest(f"m{shift}_{int(ml)}", shift, ml)
                          for shift in (0, 1) for ml in (False, True)}}


def _config(root: Path, out: Path, algorithm: str, extra: dict) -> dict:
    cfg = {"name": algorithm, "output_dir": str(out), "seed": 0,
           "data": {"root": str(Path(root).resolve()), "image_size": 32, "task": "multiclass",
                    # the module's fixture runs before the autouse per-test cache folder
                    "cache_dir": str(Path(root) / "cache")},
           "model": {"name": "cnn", "widths": [8, 16, 16]},
           "algorithm": {"name": algorithm},
           "train": {"steps": 3, "batch_size": 8, "mu": 2, "eval_every": 3, "log_every": 1,
                     "progress": False, "tensorboard": False, "lr": 0.05},
           "report": []}
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def _run(dataset: dict, algorithm: str, shift: int) -> tuple[list[dict], dict, Trainer]:
    extra = {k: dict(v) for k, v in OVERRIDES.get(algorithm, {}).items()}
    multilabel = extra.get("data", {}).get("task") == "multilabel"
    data = extra.setdefault("data", {})
    data.update(manifest=str(dataset["manifests"][(shift, multilabel)]),
                labeled_names_file=str(dataset["out"] / "labeled.txt"),
                test_names_file=str(dataset["out"] / "test.txt"))
    if data.get("metadata") == "csv":
        data["metadata_file"] = str(dataset["meta"])
    if algorithm in ("noisy_student", "distill"):
        extra.setdefault("algorithm", {})["teacher"] = str(dataset["teacher"])
    if algorithm == "lwf":  # fine-tuned from the original run, which it keeps predicting
        extra.setdefault("algorithm", {})["source"] = str(dataset["teacher"])
        extra.setdefault("model", {})["init"] = str(dataset["teacher"])
    out = dataset["out"]
    cfg = config_from_dict(_config(out, out / f"{algorithm}-{shift}", algorithm, extra))
    trainer = Trainer(cfg)
    result = trainer.fit()
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    rows = [{k: v for k, v in r.items() if not k.startswith("time/")}
            for r in read_metrics(result.run_dir)]
    return rows, state, trainer


@pytest.mark.parametrize("algorithm", algorithm_names())
def test_no_training_step_sees_the_hidden_labels(dataset: dict, algorithm: str) -> None:
    rows_true, state_true, trainer = _run(dataset, algorithm, 0)
    rows_changed, state_changed, changed = _run(dataset, algorithm, 1)

    # the two runs really differ in the hidden labels, and only there
    split = trainer.data.split
    hidden = np.setdiff1d(split.unlabeled, split.labeled)
    assert len(hidden) == dataset["hidden"] > 0
    differs = (trainer.data.labels != changed.data.labels).reshape(len(hidden) + len(
        split.labeled) + len(split.test), -1).any(dim=1)
    assert torch.equal(torch.nonzero(differs).flatten(), torch.as_tensor(np.sort(hidden)))
    # the hooks' view of the labels hides them
    visible = changed.run_data().labels
    assert bool((visible[torch.as_tensor(hidden)] == -1).all())
    assert torch.equal(visible[torch.as_tensor(split.labeled)],
                       changed.data.labels[torch.as_tensor(split.labeled)])

    for part in ("algorithm", "eval_model"):
        assert state_true[part].keys() == state_changed[part].keys()
        for key, value in state_true[part].items():
            assert torch.equal(value, state_changed[part][key]), (part, key)
    assert len(rows_true) == len(rows_changed)
    scored = False
    for a, b in zip(rows_true, rows_changed, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key in HIDDEN_SCORES:
                scored = scored or a[key] != b[key]
            else:
                assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), key
    # the engine still scores the pseudo-labels against the hidden labels it keeps
    keys = {k for r in rows_true for k in r}
    if keys & set(HIDDEN_SCORES):
        assert scored, keys & set(HIDDEN_SCORES)


def test_a_batch_carries_no_hidden_labels() -> None:
    fields = set(Batch.__dataclass_fields__)
    assert fields == {"labeled", "labels", "unlabeled", "unlabeled_index", "labeled_meta",
                      "unlabeled_meta"}
