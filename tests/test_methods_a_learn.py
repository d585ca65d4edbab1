"""Part-A SSL methods learn on real images, resume exactly and train through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import small_config, stopped_and_resumed_state

import aerossl
from aerossl.cli import main

METHODS = ["pseudo_label", "pi_model", "mean_teacher", "vat", "uda"]
CONFIGS = Path(aerossl.__file__).parent / "configs"


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


# (method, extra algorithm parameters, minimum test accuracy; chance is 0.2)
LEARNING = [
    ("pseudo_label", {}, 0.4),
    ("pi_model", {}, 0.4),
    ("mean_teacher", {}, 0.4),
    ("vat", {"entropy_weight": 0.06}, 0.4),
    ("uda", {}, 0.4),
]


@pytest.mark.slow  # multi-step training (CI runs it: pytest -m slow)
@pytest.mark.parametrize(("method", "params", "min_acc"), LEARNING, ids=[m for m, *_ in LEARNING])
def test_method_learns_on_real_images(five_classes: Path, tmp_path: Path, method: str,
                                      params: dict, min_acc: float) -> None:
    cfg = small_config(five_classes, tmp_path, method, train__steps=150, train__eval_every=75,
                       train__log_every=10)
    cfg["algorithm"].update(params)
    result = aerossl.train(cfg)
    rows = train_rows(result.run_dir)
    for key in ("loss", "loss/sup", "loss/unsup", "lambda_u"):
        assert all(torch.isfinite(torch.tensor(r[key])) for r in rows), key
    assert rows[-1]["loss/sup"] < rows[0]["loss/sup"]
    assert rows[-1]["loss/unsup"] > 0  # the unlabelled term is active
    if method not in ("uda",):  # the unlabelled weight ramps up
        assert rows[0]["lambda_u"] < 0.1 * rows[-1]["lambda_u"]
    if method in ("pseudo_label", "uda"):  # confident guesses are accepted, mostly right
        assert rows[-1]["mask_rate"] > 0.2
        accs = [r["pseudo_acc"] for r in rows if math.isfinite(r.get("pseudo_acc") or math.nan)]
        assert accs and max(accs) > 0.6
    assert result.final_acc >= min_acc, result


def test_mean_teacher_resume_restores_the_teacher_exactly(five_classes: Path,
                                                         tmp_path: Path) -> None:
    cfg = aerossl.validate.config_from_dict(small_config(five_classes, tmp_path, "mean_teacher",
                                                       algorithm__rampup_fraction=0.2))
    a = stopped_and_resumed_state(cfg, tmp_path)
    teacher = [k for k in a if k.startswith("teacher.")]
    assert teacher and "teacher_updates" in a and int(a["teacher_updates"]) == 12
    # the teacher is an average, not a copy, of the student
    assert not all(torch.equal(a[k], a["model." + k[len("teacher."):]]) for k in teacher)


def test_every_part_a_method_trains_from_its_shipped_config_through_the_cli(
    five_classes: Path, tmp_path: Path, capsys
) -> None:
    for method in METHODS:
        args = ["train", str(CONFIGS / f"ucmerced_{method}.yaml"), f"data.root={five_classes}",
                f"output_dir={tmp_path}", f"name=cli_{method}", "train.steps=3",
                "train.batch_size=8", "train.mu=1", "train.eval_every=3", "train.progress=false",
                "train.tensorboard=false", "model.widths=[8,16]", "report=[]"]
        assert main(args) == 0, method
        assert "test accuracy" in capsys.readouterr().out
        rows = train_rows(tmp_path / f"cli_{method}")
        assert rows and all(torch.isfinite(torch.tensor(r["loss/unsup"])) for r in rows), method
        saved = (tmp_path / f"cli_{method}" / "config.yaml").read_text()
        assert f"name: {method}" in saved
