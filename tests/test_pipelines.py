"""Teacher-student pipelines: SimCLR pre-training -> fine-tuning -> distillation, Noisy Student,
knowledge distillation, pseudo-labelling, and the contrastive augmentations."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import aerossl
from aerossl.algorithms.distill import distillation_loss
from aerossl.algorithms.noisy_student import balance_weights
from aerossl.algorithms.simclr import linear_probe, nt_xent
from aerossl.augment import build_pipeline
from aerossl.augment.contrastive import ColorJitter, GaussianBlur, RandomGrayscale, ResizedCrop
from aerossl.augment.functional import grey
from aerossl.cli import main
from aerossl.config import CONTRASTIVE, STRONG, WEAK
from aerossl.engine.trainer import Trainer
from aerossl.errors import ConfigError
from aerossl.pipelines.stages import run_stage, with_default_pipelines
from aerossl.runs.loader import load_run_config, load_run_network
from aerossl.validate import config_from_dict

# SimCLR on 32 px images: mild colour jitter (colour is a strong cue of aerial scene classes)
CONTRASTIVE_32PX = [
    {"name": "resized_crop", "scale": [0.3, 1.0]}, "flip", "rot90",
    {"name": "color_jitter", "p": 0.8, "brightness": 0.1, "contrast": 0.1, "saturation": 0.1,
     "hue": 0.02},
    {"name": "gaussian_blur", "p": 0.5},
]


def base_config(root: Path, steps: int = 6, **train) -> dict:
    return {
        "seed": 0,
        "data": {"root": str(root), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64], "bn_momentum": 0.1},
        "train": {"steps": steps, "batch_size": 10, "mu": 2, "eval_every": steps, "log_every": 3,
                  "ema": 0, "progress": False, "tensorboard": False, "lr": 0.05,
                  "num_threads": 1, **train},
        "report": [],
    }


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------- losses by hand


def test_nt_xent_matches_the_formula() -> None:
    torch.manual_seed(0)
    z1, z2, tau = torch.randn(3, 4), torch.randn(3, 4), 0.5
    loss, _ = nt_xent(z1, z2, tau)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(6):
        j = (i + 3) % 6
        others = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(6) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / others)
    assert float(loss) == pytest.approx(total / 6, rel=1e-5)
    aligned, acc = nt_xent(torch.eye(3), torch.eye(3), 0.1)
    assert float(acc) == 1.0 and float(aligned) < 1e-3


def test_distillation_losses_match_hinton_and_deit() -> None:
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    tau = 2.0
    pt, ps = torch.softmax(t / tau, 1), torch.softmax(s / tau, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    assert float(distillation_loss(s, t, "soft", tau)) == pytest.approx(tau**2 * float(kl))
    assert float(distillation_loss(s, t, "hard", tau)) == pytest.approx(
        float(F.cross_entropy(s, torch.tensor([0, 1]))))
    assert float(distillation_loss(t, t, "soft", tau)) == pytest.approx(0.0, abs=1e-6)


def test_balance_weights_keep_the_most_confident_and_upweight_rare_classes() -> None:
    confidence = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.2])
    label = torch.tensor([0, 0, 0, 0, 1, 1])
    keep = confidence >= 0.5  # the last image is filtered out
    w = balance_weights(confidence, label, keep, 2)  # K = 5 kept / 2 classes = 2.5
    assert w.tolist() == pytest.approx([1, 1, 1, 0, 2.5, 0])


# ------------------------------------------------------------------------- augmentations


def test_contrastive_ops_any_channels_seeded_and_identities() -> None:
    pipe = build_pipeline(CONTRASTIVE)
    for c in (1, 3, 13):
        x = torch.rand(6, c, 24, 24)
        a = pipe(x, torch.Generator().manual_seed(3))
        b = pipe(x, torch.Generator().manual_seed(3))
        assert a.shape == x.shape and torch.equal(a, b)
        assert float(a.min()) >= 0 and float(a.max()) <= 1 and not torch.equal(a, x)
    x = torch.rand(4, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(ResizedCrop(scale=[1, 1], ratio=[1, 1])(x, g), x)
    assert torch.equal(ColorJitter(p=0.0)(x, g), x)
    assert torch.equal(RandomGrayscale(p=1.0)(x, g), grey(x).expand_as(x))
    flat = torch.full((2, 5, 16, 16), 0.3)
    torch.testing.assert_close(GaussianBlur(p=1.0)(flat, g), flat)
    blurred = GaussianBlur(sigma=[2, 2], p=1.0)(x, g)
    assert float(blurred.std()) < float(x.std())  # smoothing lowers the variance of noise
    with pytest.raises(ConfigError, match="resized_crop.*scale"):
        build_pipeline([{"name": "resized_crop", "scale": [0.9, 0.1]}])


# ------------------------------------------------------------------------- the pipelines


@pytest.mark.slow  # multi-step training (CI runs it: pytest -m slow)
def test_simclr_finetune_distill_pipeline_on_real_images(five_classes: Path,
                                                          tmp_path: Path) -> None:
    base = base_config(five_classes)
    pretrain = {"name": "pretrain", "algorithm": {"name": "simclr", "temperature": 0.2},
                "train": {"steps": 150, "eval_every": 150, "batch_size": 8, "mu": 4,
                          "lr": 0.03, "weight_decay": 1e-4}}
    spec = {
        "name": "ucm5", "output_dir": str(tmp_path), "base": base,
        "stages": [
            pretrain,
            {"name": "finetune", "algorithm": {"name": "supervised"},
             "model": {"init": "@pretrain"}, "train": {"steps": 30, "backbone_lr_scale": 0.1}},
            {"name": "distill", "algorithm": {"name": "distill", "teacher": "@finetune",
                                              "alpha": 1.0},
             "model": {"widths": [8, 16, 32]}, "train": {"steps": 30}},
        ],
    }
    summary = aerossl.run_pipeline(spec)
    root = tmp_path / "ucm5"
    rows = {r["stage"]: r for r in summary["stages"]}
    assert list(rows) == ["pretrain", "finetune", "distill"]

    # the representation improved over the same encoder at its random initialisation
    cfg = config_from_dict(with_default_pipelines(
        {**base, **{k: v for k, v in pretrain.items() if k != "name"},
         "train": {**base["train"], **pretrain["train"]}, "name": "random",
         "output_dir": str(tmp_path / "random")}))
    untrained = Trainer(cfg)
    random_probe = linear_probe(untrained.eval_network(), untrained.run_data())
    assert rows["pretrain"]["linear_probe_acc"] > random_probe, (rows, random_probe)

    # each stage read the previous stage's checkpoint
    assert load_run_config(root / "finetune").model.init == str(root / "pretrain")
    assert load_run_config(root / "distill").algorithm_params()["teacher"] == str(root / "finetune")
    assert rows["distill"]["teacher_acc"] == pytest.approx(rows["finetune"]["final_acc"])
    assert rows["finetune"]["final_acc"] > 0.4  # chance 0.2
    assert rows["distill"]["final_acc"] > 0.4
    assert (root / "pipeline_summary.md").read_text().count("|") > 20

    # running the pipeline again skips the finished stages
    before = (root / "distill" / "metrics.jsonl").read_text()
    again = aerossl.run_pipeline(spec)
    assert again == summary and (root / "distill" / "metrics.jsonl").read_text() == before


def test_a_stopped_stage_resumes(five_classes: Path, tmp_path: Path) -> None:
    raw = {**base_config(five_classes, steps=8), "name": "s", "output_dir": str(tmp_path),
           "algorithm": {"name": "supervised"}}
    trainer = Trainer(config_from_dict(raw), tmp_path / "s")
    assert trainer.fit(until=4) is None
    summary = run_stage(raw, tmp_path / "s", "test")
    assert summary["steps"] == 8
    steps = [m["step"] for m in metrics(tmp_path / "s") if m["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 8


@pytest.mark.slow  # multi-step training (CI runs it: pytest -m slow)
def test_noisy_student_round_uses_the_teachers_pseudo_labels(five_classes: Path,
                                                             tmp_path: Path) -> None:
    base = base_config(five_classes, steps=40)
    base["output_dir"] = str(tmp_path)
    summary = aerossl.noisy_student(base, rounds=1, name="ns",
                                    student={"model": {"dropout": 0.3},
                                             "algorithm": {"threshold": 0.3}})
    rows = summary["stages"]
    assert [r["stage"] for r in rows] == ["teacher", "round1"]
    assert rows[1]["teacher_acc"] == pytest.approx(rows[0]["final_acc"])
    assert rows[0]["final_acc"] > 0.4
    assert rows[1]["final_acc"] > 0.4
    root = tmp_path / "ns"
    student_cfg = load_run_config(root / "round1")
    assert student_cfg.model.model_dump()["dropout"] == 0.3

    # the student's targets are the clean teacher's predictions (labels for labelled images)
    state = torch.load(root / "round1" / "checkpoints" / "last.pt", weights_only=True)
    targets, weights = state["algorithm"]["targets"], state["algorithm"]["weights"]
    teacher, _ = load_run_network(root / "teacher")
    trainer = Trainer(student_cfg.model_copy(update={"output_dir": str(tmp_path / "x")}))
    data = trainer.run_data()
    idx = np.setdiff1d(data.unlabeled, data.labeled)
    probs = data.predict(teacher, idx).softmax(1)
    torch.testing.assert_close(targets[torch.as_tensor(idx)], probs, atol=1e-5, rtol=1e-4)
    kept = weights[torch.as_tensor(idx)] > 0
    assert bool((probs.max(1).values[kept] >= 0.3).all())
    lab = torch.as_tensor(data.labeled)
    assert torch.equal(targets[lab].argmax(1), data.labels[lab]) and bool((weights[lab] == 1).all())


def test_cli_stages_and_pseudo_labels(five_classes: Path, tmp_path: Path) -> None:
    cfg = {**base_config(five_classes), "output_dir": str(tmp_path),
           "augment": {"weak": WEAK, "strong": STRONG, "contrastive": CONTRASTIVE_32PX}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["pretrain", str(path), "name=pre"]) == 0
    assert main(["finetune", str(tmp_path / "pre"), str(path), "name=probe", "--linear-probe"]) == 0
    assert load_run_config(tmp_path / "probe").model.freeze_backbone
    assert main(["finetune", str(tmp_path / "pre"), str(path), "name=ft",
                 "--backbone-lr-scale", "0.1"]) == 0
    best = tmp_path / "ft" / "checkpoints" / "best.pt"  # a run folder or one of its checkpoints
    assert main(["distill", str(best), str(path), "name=kd", "model.widths=[8,16]",
                 "--mode", "hard"]) == 0
    kd = load_run_config(tmp_path / "kd")
    assert kd.algorithm.name == "distill" and kd.algorithm_params()["mode"] == "hard"
    assert main(["train", "--resume", str(tmp_path / "kd"), "train.steps=8"]) == 0

    out = tmp_path / "pl.csv"
    assert main(["pseudo-label", str(tmp_path / "ft"), str(five_classes), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 200
    classes = sorted(p.name for p in five_classes.iterdir())
    for row in rows[:20]:
        probs = [float(row[f"prob_{c}"]) for c in classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["predicted_class"] == classes[int(np.argmax(probs))]
        assert float(row["confidence"]) == pytest.approx(max(probs), abs=1e-6)


def test_teacher_errors_are_clear(five_classes: Path, tmp_path: Path) -> None:
    cfg = {**base_config(five_classes), "output_dir": str(tmp_path), "name": "kd",
           "algorithm": {"name": "distill"}}
    with pytest.raises(ConfigError, match="algorithm.teacher: 'distill' needs the run folder"):
        aerossl.train(cfg)
    cfg["algorithm"]["teacher"] = str(tmp_path / "nowhere")
    with pytest.raises(aerossl.CheckpointError, match="nowhere"):
        aerossl.train(cfg)
    with pytest.raises(ConfigError, match="names no earlier stage"):
        aerossl.run_pipeline({"name": "p", "output_dir": str(tmp_path), "base": cfg,
                              "stages": [{"name": "a", "algorithm": {"teacher": "@b"}}]})


@pytest.mark.parametrize("name", ["simclr_pipeline", "noisy_student_pipeline"])
def test_example_pipelines_are_valid(name: str) -> None:
    from aerossl.pipelines.stages import stage_configs

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.yaml"
    stages = stage_configs(path)
    assert len(stages) == 3
    for stage, raw in stages:
        cfg = config_from_dict(with_default_pipelines(raw), stage)
        assert cfg.name == stage
    assert "@" not in json.dumps([raw for _, raw in stages])


def test_a_method_brings_its_own_augment_pipeline_only_where_the_config_lacks_it() -> None:
    from aerossl.config import CONTRASTIVE, WEAK

    # SimCLR under another view name, a config with its own augment section: added beside
    raw = {"algorithm": {"name": "simclr", "view": "pairs"}, "augment": {"weak": WEAK}}
    out = with_default_pipelines(raw)
    assert out["augment"] == {"weak": WEAK, "pairs": CONTRASTIVE}
    assert config_from_dict(out).augment["pairs"] == CONTRASTIVE
    # no augment section: the defaults plus the method's pipeline
    out = with_default_pipelines({"algorithm": {"name": "simclr", "view": "pairs"}})
    assert set(out["augment"]) == {"weak", "strong", "contrastive", "pairs"}
    # a pipeline the user wrote is kept as written; other methods bring nothing
    mine = {"algorithm": {"name": "simclr"}, "augment": {"contrastive": WEAK}}
    assert with_default_pipelines(mine) == mine
    fixmatch = {"algorithm": {"name": "fixmatch"}, "augment": {"weak": WEAK}}
    assert with_default_pipelines(fixmatch) == fixmatch
    unknown = {"algorithm": {"name": "nope"}}
    assert with_default_pipelines(unknown) == unknown


def test_the_transfer_source_a_method_declares_is_one_of_its_parameters() -> None:
    # aerossl finetune fills it (tests/test_lwf.py runs that path)
    from aerossl.algorithms import algorithm_names, get_algorithm

    assert [n for n in algorithm_names() if get_algorithm(n).transfer_source] == ["lwf"]
    assert get_algorithm("lwf").transfer_source in get_algorithm("lwf").Params.model_fields
