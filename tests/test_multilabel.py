"""Multi-label scenes: manifests, splits, pseudo-label masks, mAP/F1 and training end to end."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEMO_CLASSES, write_image
from torch import nn

import aerossl
from aerossl.algorithms import Batch, StepContext, get_algorithm
from aerossl.algorithms.multilabel_fixmatch import (
    multilabel_pseudo_labels,
)
from aerossl.cli import main
from aerossl.config import DataConfig
from aerossl.data import demo_dataset_path, read_image
from aerossl.data.dataset import task_of
from aerossl.data.multilabel import (
    MultiLabelDataset,
    demo_multilabel_manifest,
    multilabel_split,
    read_manifest,
)
from aerossl.engine.data import load_data
from aerossl.engine.pseudo_stats import multilabel_pseudo_label_stats, pseudo_label_log
from aerossl.engine.trainer import Trainer
from aerossl.errors import ConfigError, DataError
from aerossl.runs.loader import load_run_network
from aerossl.tasks import average_precision, get_task, multilabel_metrics
from aerossl.validate import config_from_dict

# ------------------------------------------------------------------ pseudo-labels and the loss


def test_pseudo_label_masks_match_a_hand_computation() -> None:
    probs = torch.tensor([[0.95, 0.70, 0.69, 0.05],
                          [0.04, 0.50, 0.051, 0.00]])
    pseudo, mask = multilabel_pseudo_labels(probs, pos_threshold=0.7, neg_threshold=0.05)
    # p >= 0.7 -> positive; p <= 0.05 -> negative; in between ignored
    assert pseudo.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 0, 1], [1, 0, 0, 1]]

    truth = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    stats = multilabel_pseudo_label_stats(pseudo, mask, truth)
    assert stats["mask_rate"].item() == 5 / 8
    assert stats["pos_rate"].item() == 2 / 8
    assert stats["neg_rate"].item() == 3 / 8
    assert stats["pseudo_precision_pos"].item() == 1 / 2  # (0,0) right, (0,1) wrong
    assert stats["pseudo_precision_neg"].item() == pytest.approx(2 / 3)  # (1,0) is a true positive
    assert stats["pseudo_acc"].item() == pytest.approx(3 / 5)


class FixedLogits(nn.Module):
    """Returns prescribed logits per input row (keyed by the first pixel)."""

    def __init__(self, table: dict[float, list[float]]) -> None:
        super().__init__()
        self.table = table
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.table[round(float(v), 3)] for v in x[:, 0, 0, 0]]) * self.scale


def _image(v: float) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), v)


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_multilabel_fixmatch_loss_matches_a_hand_computation() -> None:
    logit = math.log(0.8 / 0.2)  # sigmoid = 0.8
    table = {
        0.1: [1.0, -1.0],  # labelled, labels [1, 0]
        0.2: [logit, -4.0],  # unlabelled weak: p = [0.8, 0.018] -> positive, negative
        0.3: [0.0, 0.0],  # unlabelled weak: p = [0.5, 0.5] -> both ignored
        0.4: [0.5, 2.0],  # strong views
        0.5: [3.0, 3.0],
    }
    cls = get_algorithm("multilabel_fixmatch")
    algo = cls(FixedLogits(table), cls.Params(lambda_u=2.0), num_classes=2,
               task=get_task("multilabel"))
    batch = Batch(labeled={"weak": _image(0.1)}, labels=torch.tensor([[1.0, 0.0]]),
                  unlabeled={"weak": torch.cat([_image(0.2), _image(0.3)]),
                             "strong": torch.cat([_image(0.4), _image(0.5)])})
    out = algo.training_step(batch, StepContext(0, 10))
    sup = (_bce(1.0, 1) + _bce(-1.0, 0)) / 2
    unsup = (_bce(0.5, 1) + _bce(2.0, 0)) / 4  # two accepted entries, mean over all four
    assert math.isclose(out.log["loss/sup"].item(), sup, rel_tol=1e-5)
    assert math.isclose(out.log["loss/unsup"].item(), unsup, rel_tol=1e-5)
    assert math.isclose(out.loss.item(), sup + 2.0 * unsup, rel_tol=1e-5)
    logged = pseudo_label_log(out, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))  # hidden labels
    assert logged["pos_rate"].item() == 0.25 and logged["neg_rate"].item() == 0.25
    assert logged["pseudo_precision_neg"].item() == 0.0  # the negative was a true positive


def test_supervised_uses_binary_cross_entropy_on_multilabel_targets() -> None:
    cls = get_algorithm("supervised")
    algo = cls(FixedLogits({0.1: [2.0, -1.0, 0.5]}), cls.Params(), num_classes=3,
               task=get_task("multilabel"))
    out = algo.training_step(Batch(labeled={"weak": _image(0.1)},
                                   labels=torch.tensor([[1.0, 1.0, 0.0]])), StepContext(0, 1))
    expected = (_bce(2.0, 1) + _bce(-1.0, 1) + _bce(0.5, 0)) / 3
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-5)


def test_single_label_algorithms_refuse_multilabel_data() -> None:
    cfg = {"data": {"root": "demo_multilabel"}, "algorithm": {"name": "fixmatch"}}
    with pytest.raises(ConfigError, match="does not support multilabel.*multilabel_fixmatch"):
        config_from_dict(cfg)
    with pytest.raises(ConfigError, match="does not support multiclass"):
        config_from_dict({"algorithm": {"name": "multilabel_fixmatch"}})
    with pytest.raises(ConfigError, match="neg_threshold"):
        config_from_dict({"data": {"root": "x.csv"}, "algorithm": {
            "name": "multilabel_fixmatch", "pos_threshold": 0.3, "neg_threshold": 0.4}})
    assert task_of(config_from_dict({"data": {"root": "demo", "task": "multilabel"},
                                     "algorithm": {"name": "supervised"}}).data) == \
        "multilabel"


# ------------------------------------------------------------------ metrics


def test_average_precision_matches_a_hand_computation() -> None:
    # ranks 1..4: TP FP TP FP -> (1/1 + 2/3) / 2
    assert math.isclose(average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]), 5 / 6)
    # tied scores enter together: thresholds 0.9 (P=1, R=1/2), 0.5 (P=2/3, R=1)
    assert math.isclose(average_precision([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]),
                        0.5 * 1 + 0.5 * 2 / 3)
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))


SCORES = np.array([[0.9, 0.2, 0.6],
                   [0.4, 0.7, 0.1],
                   [0.8, 0.6, 0.3],
                   [0.3, 0.1, 0.2]])
TRUTH = np.array([[1, 0, 0],
                  [0, 1, 0],
                  [1, 0, 0],
                  [1, 1, 0]], dtype=bool)  # class 2 has no positive


def test_multilabel_metrics_match_a_hand_computation() -> None:
    m = multilabel_metrics(SCORES, TRUTH)
    # class 0: ranking 0.9 T, 0.8 T, 0.4 F, 0.3 T -> (1 + 1 + 3/4) / 3
    ap0 = (1 + 1 + 3 / 4) / 3
    # class 1: ranking 0.7 T, 0.6 F, 0.2 F, 0.1 T -> (1 + 2/4) / 2
    ap1 = (1 + 2 / 4) / 2
    assert math.isclose(m["per_class"]["ap"][0], ap0)
    assert math.isclose(m["per_class"]["ap"][1], ap1)
    assert math.isnan(m["per_class"]["ap"][2])
    assert math.isclose(m["map_macro"], (ap0 + ap1) / 2)  # class 2 left out
    # micro: the 12 entries pooled; positives at 0.9, 0.8, 0.7, 0.3, 0.1 in the ranking
    # 0.9T 0.8T 0.7T 0.6F 0.6F 0.4F 0.3T 0.3F 0.2F 0.2F 0.1T 0.1F (ties at 0.6, 0.3, 0.2, 0.1)
    micro = (1 + 1 + 1) / 5 + (4 / 8) / 5 + (5 / 12) / 5
    assert math.isclose(m["map_micro"], micro)
    # F1 at 0.5: class 0 TP=2 FN=1 -> 4/5; class 1 TP=1 FP=1 FN=1 -> 1/2; class 2 FP=1
    assert math.isclose(m["f1_macro"], (4 / 5 + 1 / 2) / 2)
    assert math.isclose(m["f1_micro"], 2 * 3 / (2 * 3 + 2 + 2))
    assert m["exact_match"] == 1 / 4  # only image 1 (predicted {1}, true {1})
    assert m["per_class"]["positives"] == [3, 2, 0]


def test_multilabel_metrics_agree_with_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = rng.random((50, 6)) < 0.3
    scores = np.round(rng.random((50, 6)), 1)  # ties
    m = multilabel_metrics(scores, truth)
    present = np.flatnonzero(truth.any(0))
    ap = [metrics.average_precision_score(truth[:, c], scores[:, c]) for c in present]
    assert math.isclose(m["map_macro"], float(np.mean(ap)))
    assert math.isclose(m["map_micro"],
                        metrics.average_precision_score(truth, scores, average="micro"))
    pred = scores >= 0.5
    assert math.isclose(m["f1_micro"], metrics.f1_score(truth, pred, average="micro"))
    assert math.isclose(m["f1_macro"], metrics.f1_score(truth, pred, average="macro",
                                                        labels=present))


# ------------------------------------------------------------------ manifests and splits


def _write_manifest(path: Path, rows: list[tuple[str, str]], header: str = "path,labels") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header] + [f"{p},{labels}" for p, labels in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_manifest_reads_paths_labels_and_classes(tmp_path: Path) -> None:
    for name in ("a.png", "sub/b.png", "c.jpg"):
        write_image(tmp_path / "imgs" / name)
    elsewhere = write_image(tmp_path / "other" / "d.png")
    manifest = _write_manifest(tmp_path / "imgs" / "labels.csv", [
        ("a.png", "forest; river"),
        ("sub/b.png", "river;river"),
        ("c.jpg", '"urban;forest"'),
        (str(elsewhere), "urban"),
    ])
    ds = read_manifest(manifest)
    assert isinstance(ds, MultiLabelDataset)
    assert ds.classes == ["forest", "river", "urban"]
    assert ds.root == tmp_path  # the deepest folder holding the manifest and every image
    assert ds.files == ["imgs/a.png", "imgs/sub/b.png", "imgs/c.jpg", "other/d.png"]
    assert ds.labels.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]]
    assert ds.source == manifest.resolve()


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([("a.png", "x"), ("missing.png", "x")], "path,labels",
         r"labels\.csv:3: 'missing\.png' does not exist"),
        ([("a.png", "x"), ("a.png", " ; ")], "path,labels",
         r"labels\.csv:3: 'a\.png' has no labels"),
        ([("a.png", "x"), ("./a.png", "y")], "path,labels",
         r"labels\.csv:3: '\./a\.png' is listed again with other labels \(y here, x on line 2\)"),
        ([("notes.txt", "x")], "path,labels", r"labels\.csv:2: 'notes\.txt' is not an image"),
        ([("a.png", "x")], "file,tags", r"labels\.csv:1: header must name the columns"),
        ([], "path,labels", r"labels\.csv: manifest lists no images"),
    ],
)
def test_bad_manifests_name_file_and_line(
    tmp_path: Path, rows: list[tuple[str, str]], header: str, message: str
) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    manifest = _write_manifest(tmp_path / "labels.csv", rows, header)
    with pytest.raises(DataError, match=message):
        read_manifest(manifest)


def test_manifest_edge_cases(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    manifest = _write_manifest(tmp_path / "labels.csv", [("a.png", "x;y"), ("b.png", "y"),
                                                         ("a.png", "y;x")])
    with caplog.at_level(logging.WARNING, logger="aerossl"):
        ds = read_manifest(manifest)
    assert len(ds) == 2 and "listed twice" in caplog.text
    (tmp_path / "short.csv").write_text("path,labels,extra\na.png\n")
    with pytest.raises(DataError, match=r"short\.csv:2: expected 3 columns"):
        read_manifest(tmp_path / "short.csv")
    with pytest.raises(DataError, match=r"nope\.csv: manifest file does not exist"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"b\.png: unknown label 'forrest'; did you mean 'forest'"):
        MultiLabelDataset.from_label_lists(tmp_path, ["a.png", "b.png"],
                                           [["forest"], ["forrest"]], classes=["forest", "urban"])


def test_split_gives_every_class_its_labelled_positives() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((200, 6)) < np.array([0.5, 0.3, 0.2, 0.1, 0.08, 0.6])).astype(np.uint8)
    classes = [f"c{i}" for i in range(6)]
    split = multilabel_split(labels, classes, test_fraction=0.5, labels_per_class=3, seed=0)
    assert len(split.test) == 100 and len(np.intersect1d(split.test, split.unlabeled)) == 0
    assert set(split.labeled) <= set(split.unlabeled)
    assert (labels[split.labeled].sum(0) >= 3).all()
    assert len(split.labeled) < 6 * 3  # images count for every class they show
    topped = multilabel_split(labels, classes, 0.5, labels_per_class=3, num_labeled=40, seed=0)
    assert len(topped.labeled) == 40 and set(split.labeled) <= set(topped.labeled)
    assert len(multilabel_split(labels, classes, 0.5, None, 25, seed=0).labeled) == 25
    with pytest.raises(DataError, match="class 'c4' has .* fewer than labels_per_class=30"):
        multilabel_split(labels, classes, 0.5, labels_per_class=30, seed=0)


def test_data_config_forms_and_the_recorded_root(tmp_path: Path) -> None:
    for i, name in enumerate(["forest", "forest", "river", "river"]):
        write_image(tmp_path / "data" / "imgs" / f"{name}{i}.png", seed=i)
    _write_manifest(tmp_path / "data" / "imgs" / "labels.csv", [
        ("forest0.png", "forest;vegetation"), ("forest1.png", "forest;vegetation"),
        ("river2.png", "river;water;vegetation"), ("river3.png", "river;water")])
    data = {"root": str(tmp_path / "data" / "imgs"), "manifest": "labels.csv", "image_size": 16,
            "labels_per_class": 1}
    cfg = config_from_dict({"output_dir": str(tmp_path / "runs"), "data": data,
                            "algorithm": {"name": "supervised"}, "report": []})
    trainer = Trainer(cfg)
    bundle = trainer.data
    assert bundle.task.name == "multilabel" and bundle.labels.dtype == torch.float32
    assert bundle.labels.shape == (4, 4) and bundle.classes == ["forest", "river",
                                                                "vegetation", "water"]
    # the run records absolute paths, so resume reads the same data from anywhere
    assert trainer.cfg.data.root == str((tmp_path / "data" / "imgs").resolve())
    assert trainer.cfg.data.manifest == str((tmp_path / "data" / "imgs" / "labels.csv").resolve())
    summary = json.loads((trainer.run_dir / "split" / "summary.json").read_text())
    assert sum(v["labeled"] for v in summary["per_class"].values()) >= 4  # positives per label

    names = tmp_path / "labeled.txt"
    names.write_text("forest1.png\nriver3.png\n")  # named as in the manifest
    named = load_data(DataConfig(root=str(tmp_path / "data" / "imgs" / "labels.csv"),
                                 image_size=16, labeled_names_file=str(names)), seed=0)
    assert [named.dataset.files[i] for i in named.split.labeled] == ["forest1.png", "river3.png"]
    assert len(named.split.test) == 2 and not set(named.split.test) & set(named.split.labeled)

    one_label = {**data, "manifest": None, "root": str(tmp_path / "data" / "single.csv"),
                 "task": "multiclass"}
    _write_manifest(tmp_path / "data" / "single.csv", [("imgs/forest0.png", "forest"),
                                              ("imgs/river2.png", "river;water")])
    with pytest.raises(DataError, match=r"single\.csv:3: 'imgs/river2\.png' has 2 labels \(river;"
                                        r"water\); a multiclass .* set data\.task: multilabel"):
        load_data(DataConfig(**one_label), seed=0)
    folder = load_data(DataConfig(root=str(tmp_path / "data"), image_size=16, task="multilabel",
                                  labels_per_class=1, test_fraction=0.25), seed=0)
    assert folder.labels.tolist() == [[1.0]] * 4  # one class folder 'imgs': one label each
    with pytest.raises(ConfigError, match="num_labeled applies to multilabel"):
        load_data(DataConfig(root=str(tmp_path), num_labeled=3), seed=0)


# ------------------------------------------------------------------ training end to end


@pytest.fixture(scope="module")
def five_class_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped demo manifest's rows of five classes, with absolute image paths: labels are
    the class plus land cover (agricultural;vegetation, beach;sand;water, harbor;water...)."""
    shipped = demo_multilabel_manifest()
    out = tmp_path_factory.mktemp("ml5") / "labels.csv"
    with shipped.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        reader = csv.DictReader(src)
        dst.write("path,labels\n")
        for row in reader:
            if row["labels"].split(";")[0] in DEMO_CLASSES:
                dst.write(f"{(shipped.parent / row['path']).resolve()},{row['labels']}\n")
    return out


def _config(manifest: Path, out: Path, algorithm: str, steps: int = 150, **algo) -> dict:
    return {
        "name": algorithm, "output_dir": str(out), "seed": 0,
        "data": {"root": str(manifest), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": algorithm, **algo},
        "train": {"steps": steps, "batch_size": 10, "mu": 2, "eval_every": steps // 2,
                  "log_every": 10, "progress": False, "tensorboard": False, "lr": 0.05},
        "report": ["md"],
    }


def _rows(run_dir: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def _chance(run_dir: Path) -> float:
    """Positive rate of the test labels: the mAP of random scores, in expectation."""
    positives = json.loads((run_dir / "eval.json").read_text())["per_class_positives"]
    num_test = json.loads((run_dir / "summary.json").read_text())["num_test"]
    return sum(positives) / (num_test * len(positives))


@pytest.mark.slow  # multi-step training (CI runs it: pytest -m slow)
@pytest.mark.parametrize("algorithm", ["supervised", "multilabel_fixmatch"])
def test_multilabel_training_learns_and_reports_map(
    five_class_manifest: Path, tmp_path: Path, algorithm: str
) -> None:
    result = aerossl.train(_config(five_class_manifest, tmp_path, algorithm))
    run = result.run_dir
    assert result.metric == "map_macro"
    chance = _chance(run)
    assert 0.2 < chance < 0.3  # 9 labels (5 classes + 4 land covers)
    assert result.final_acc >= chance + 0.4, (result, chance)
    assert result.metrics["map_micro"] >= chance + 0.4, result
    train = _rows(run, "train")
    assert all(math.isfinite(r["loss"]) for r in train)
    assert train[-1]["loss"] < train[0]["loss"]
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["task"] == "multilabel" and len(evaluation["per_class_ap"]) == 9
    assert evaluation["map_macro"] == result.final_acc
    test = _rows(run, "test")
    assert test[-1]["best_map_macro"] == result.best_acc == max(r["map_macro"] for r in test)
    if algorithm == "multilabel_fixmatch":
        assert train[-1]["pos_rate"] > 0 and train[-1]["neg_rate"] > 0.3
        assert train[-1]["pseudo_precision_neg"] > 0.9
    report = (run / "report.md").read_text()
    assert "final macro mAP" in report and "Per-label average precision" in report


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_multilabel_run_resumes_exactly_and_reevaluates_predicts_exports(
    five_class_manifest: Path, tmp_path: Path
) -> None:
    cfg = config_from_dict({**_config(five_class_manifest, tmp_path, "multilabel_fixmatch",
                                      steps=8), "report": []})
    full = Trainer(cfg, tmp_path / "full").fit()
    stopped = Trainer(cfg, tmp_path / "stopped")
    assert stopped.fit(until=4) is None
    resumed = aerossl.resume(tmp_path / "stopped")
    assert resumed.final_acc == full.final_acc and resumed.metrics == full.metrics
    again = aerossl.evaluate(full.run_dir)
    assert again["task"] == "multilabel" and again["map_macro"] == pytest.approx(full.final_acc)

    # predict and export give independent sigmoid probabilities per label
    network, info = load_run_network(full.run_dir)
    beach = sorted((demo_dataset_path() / "beach").iterdir())[:3]
    with torch.no_grad():
        x = torch.from_numpy(np.stack([read_image(p, 32) for p in beach])).float() / 255
        expected = torch.sigmoid(network(x))
    res = aerossl.predict_paths(full.run_dir, beach, tmp_path / "pred.csv", top_k=2,
                                progress=False)
    with res.output_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["top1_prob"]) for r in rows] == pytest.approx(
        expected.max(dim=1).values.tolist(), abs=1e-5)
    assert [r["top1_class"] for r in rows] == [info["classes"][i] for i in expected.argmax(1)]
    exported = torch.jit.load(str(aerossl.export_run(full.run_dir, "torchscript")))
    images = torch.from_numpy(np.stack([read_image(p, 32) for p in beach]))
    assert torch.allclose(exported(images), expected, atol=1e-5)


def test_shipped_multilabel_config_runs_from_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "demo_multilabel" in aerossl.shipped_configs()
    baseline = aerossl.load_config(aerossl.find_config("demo_multilabel"),
                                   ["algorithm.name=supervised"])  # as its comment says
    assert task_of(baseline.data) == "multilabel"
    code = main(["train", "demo_multilabel", f"output_dir={tmp_path}", "train.steps=4",
                 "train.eval_every=4", "train.batch_size=8", "train.mu=1", "train.progress=false",
                 "model.widths=[8,16,16]", "report=[]", "train.tensorboard=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test map_macro" in out and "map_micro" in out
    assert main(["evaluate", str(tmp_path / "demo_multilabel")]) == 0
    assert "macro mAP" in capsys.readouterr().out
    summary = json.loads((tmp_path / "demo_multilabel" / "summary.json").read_text())
    assert summary["metric"] == "map_macro" and len(summary["classes"]) == 27
    assert "vegetation" in summary["classes"] and summary["num_labeled"] >= 4 * 21 // 2
