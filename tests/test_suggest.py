"""``aerossl suggest-labels``: the acquisition rule, its outputs, and the loop back to training."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_config

import aerossl
from aerossl import cli
from aerossl.augment import build_pipeline
from aerossl.data.splits import read_split_files
from aerossl.errors import AerosslError, DataError
from aerossl.runs.suggest import Scores, accept_labels, score_images, select, unit_features


def scores(probs: list[list[float]], features: list[list[float]], u: list[float]) -> Scores:
    p = np.asarray(probs, dtype=np.float64)
    z = np.asarray(features, dtype=np.float64)
    return Scores(p, np.asarray(u), np.zeros(len(u)), unit_features(z, np.zeros(z.shape[1])))


def test_select_balances_predicted_classes_and_avoids_near_duplicates() -> None:
    # class 0: four very uncertain images, two of them duplicates (same features);
    # class 1: two less uncertain ones
    probs = [[0.6, 0.4]] * 4 + [[0.3, 0.7]] * 2
    feats = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, -1]]
    u = [0.99, 0.98, 0.90, 0.85, 0.5, 0.4]
    picks, sims = select(scores(probs, feats, u), 2, diversity=0.5)
    assert sorted(picks) == [0, 4]  # one per predicted class, the most uncertain of each
    picks, sims = select(scores(probs, feats, u), 4, diversity=0.5)
    assert picks[:2] == [0, 4] and sorted(picks[2:]) == [2, 5]  # not the duplicate 1
    assert sims[0] == -1.0  # nothing labelled yet
    picks, _ = select(scores(probs, feats, u), 4, diversity=0.0)
    assert 1 in picks  # without the diversity term the duplicate comes in
    labeled = unit_features(np.array([[1.0, 0.0, 0.0]]), np.zeros(3))
    picks, sims = select(scores(probs, feats, u), 1, labeled, diversity=0.5)
    assert picks == [2] and sims[0] == pytest.approx(0.0)  # 0 and 1 duplicate a label


def test_uncertainty_is_normalised_entropy_of_the_mean_over_views() -> None:
    class FlipSensitive(torch.nn.Module):
        """Confident class 0 for one orientation, class 2 for the mirror image."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            left = x[:, 0, 0, 0] > x[:, 0, 0, -1]
            logits = torch.full((len(x), 3), -20.0)
            logits[left, 0] = 20.0
            logits[~left, 2] = 20.0
            return logits

    x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    x[:, :, :, :4] = 200  # bright left half
    x[1] = 100  # flat image: never 'left'
    net = FlipSensitive()
    s = score_images(net, x, np.array([0, 1]), build_pipeline([]), 1, torch.device("cpu"))
    assert s.uncertainty == pytest.approx([0.0, 0.0], abs=1e-6)  # identity view: confident
    mirror = build_pipeline([{"name": "flip", "p_h": 1.0, "p_v": 0.0}])
    s = score_images(net, x, np.array([0, 1]), mirror, 1, torch.device("cpu"))
    assert s.probs.argmax(1).tolist() == [2, 2]
    # random horizontal flips: image 0 is seen both ways, the mean is split between 0 and 2
    s = score_images(net, x, np.array([0, 1]), build_pipeline([{"name": "flip", "p_v": 0.0}]), 32,
                     torch.device("cpu"), seed=3)
    p = s.probs[0]
    assert 0.2 < p[0] < 0.8 and p[0] + p[2] == pytest.approx(1.0)
    expected = -(p[0] * math.log(p[0]) + p[2] * math.log(p[2])) / math.log(3)
    assert s.uncertainty[0] == pytest.approx(expected, rel=1e-4)
    assert s.uncertainty[1] == pytest.approx(0.0, abs=1e-6)
    assert s.margin[1] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = small_config("demo", tmp_path_factory.mktemp("runs"), "supervised",
                       data__labels_per_class=2, model__widths=[8, 16, 16], train__steps=10,
                       train__batch_size=16, train__eval_every=10, train__log_every=5,
                       train__lr=0.03)
    return aerossl.train(cfg).run_dir


def split_names(path: Path) -> list[str]:
    return [n for n in path.read_text().splitlines() if n and not n.startswith("#")]


def test_suggestions_are_pool_images_and_a_new_run_trains_on_them(
    run_dir: Path, tmp_path: Path
) -> None:
    res = aerossl.suggest_labels(run_dir, 12, tmp_path / "s", views=2)
    rows = list(csv.DictReader((tmp_path / "s" / "suggestions.csv").open()))
    assert [int(r["rank"]) for r in rows] == list(range(1, 13))
    labeled = split_names(run_dir / "split" / "labeled.txt")
    test = split_names(run_dir / "split" / "test.txt")
    names = [r["path"] for r in rows]
    assert len(set(names)) == 12 and not set(names) & (set(labeled) | set(test))
    assert res.pool_size == 840 // 2 - 42
    assert (tmp_path / "s" / "suggestions.html").read_text().count("<figure>") == 12
    assert split_names(res.files["split"]) == labeled + names
    # a new run picks them up (same test set)
    cfg = aerossl.validate.load_config(run_dir / "config.yaml").to_dict()
    cfg["data"].update(labeled_names_file=str(res.files["split"]),
                       test_names_file=str(run_dir / "split" / "test.txt"), mean=None, std=None)
    cfg["train"]["steps"] = 1
    cfg["output_dir"], cfg["name"] = str(tmp_path / "runs"), "next"
    nxt = aerossl.train(cfg).run_dir
    assert sorted(split_names(nxt / "split" / "labeled.txt")) == sorted(labeled + names)
    assert split_names(nxt / "split" / "test.txt") == test


def test_budget_larger_than_pool_is_an_error_and_writes_nothing(run_dir: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(AerosslError, match=r"budget 1000 is larger than the unlabelled pool.*378"):
        aerossl.suggest_labels(run_dir, 1000, tmp_path / "s")
    assert not (tmp_path / "s").exists()
    assert cli.main(["suggest-labels", str(run_dir), "--budget", "1000"]) == 2


def test_accept_keeps_labelled_rows_and_checks_them_against_the_dataset(
    run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s"
    assert cli.main(["suggest-labels", str(run_dir), "--budget", "4", "--out", str(out),
                     "--views", "1"]) == 0
    path = out / "suggestions.csv"
    rows = list(csv.DictReader(path.open()))
    rows[0]["label"] = rows[0]["path"].split("/")[0]  # the true class (its folder)
    rows[2]["label"] = rows[2]["path"].split("/")[0]

    def write(rows: list[dict]) -> None:
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    write(rows)
    split = accept_labels(run_dir, path)
    labeled = split_names(run_dir / "split" / "labeled.txt")
    assert split_names(split) == [*labeled, rows[0]["path"], rows[2]["path"]]
    wrong = "forest" if rows[1]["path"].split("/")[0] != "forest" else "beach"
    rows[1]["label"] = wrong
    write(rows)
    with pytest.raises(DataError, match=rf"suggestions.csv:3: .* labelled '{wrong}' but the "
                       "dataset has it in class"):
        accept_labels(run_dir, path)
    rows[1]["label"] = "forst"
    write(rows)
    with pytest.raises(DataError, match="not a class of the run.*forest"):
        accept_labels(run_dir, path)
    # the written split file is a valid one for the dataset
    dataset, _ = aerossl.engine.data.read_dataset(aerossl.runs.loader.load_run_config(
        run_dir).data)
    labeled_idx, _ = read_split_files(dataset, split, None)
    assert len(labeled_idx) == len(labeled) + 2
