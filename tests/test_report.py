"""Tests for the run report (aerossl.engine.report)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import matplotlib
import pytest

from aerossl.algorithms.fixmatch import FixMatch
from aerossl.data import demo_dataset_path
from aerossl.engine.logger import MetricLogger
from aerossl.engine.report import write_report
from aerossl.engine.trainer import Trainer
from aerossl.errors import CheckpointError
from aerossl.validate import config_from_dict

CLASSES = ["airplane", "beach", "dense_<residential>&co"]  # a class name that is HTML
NAME = "<b>not html</b>"  # the run's name, shown in the config section


def _write_metrics(path: Path) -> None:
    """With the engine's own logger and keys: train rows every 2 steps (a NaN loss at step 10,
    a row with keys missing at 12), test rows every 20; then a truncated line, as a killed run
    can leave."""
    logger = MetricLogger(path.parent, tensorboard=False)
    for step in range(2, 61, 2):
        row = {"loss": 2.0 - step / 40, "loss/sup": 1.0, "loss/unsup": step / 100,
               "mask_rate": step / 60, "pseudo_acc": 0.5 + step / 200,
               "lr": 0.03 * (1 - step / 100), "skipped_steps": 0, "time/data": 0.01,
               "time/model": 0.1, "time/optim": 0.02}
        if step == 10:
            row["loss"] = math.nan
        if step == 12:
            row = {"loss": 1.5, "lr": 0.03}
        logger.log(step, "train", row)
    for step in (20, 40, 60):
        acc = 0.5 + step / 200
        logger.log(step, "test", {"acc": acc, "loss": 1.0, "best_acc": acc})
    logger.close()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"step": 61, "split": "test"}\n')  # a test row without values
        f.write('{"step": 62, "split": "tr')  # truncated last line of a killed run


def _nan_loss_at(step: int):
    """FixMatch's training step, with a NaN loss at 0-based step ``step``."""
    original = FixMatch.training_step

    def training_step(self, batch, ctx):
        out = original(self, batch, ctx)
        if ctx.step == step:
            out.loss = out.loss * float("nan")
        return out

    return training_step


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a real 12-step FixMatch run with its report (every file the engine
    writes), with one NaN loss (skipped)."""
    data = tmp_path_factory.mktemp("classes")
    for name, demo in zip(CLASSES, ("airplane", "beach", "denseresidential"), strict=True):
        shutil.copytree(demo_dataset_path() / demo, data / name)
    run = tmp_path_factory.mktemp("full") / "run"
    cfg = config_from_dict({
        "name": NAME, "seed": 0, "report": ["html", "md"],
        "data": {"root": str(data), "image_size": 32, "labels_per_class": 2,
                 "cache_dir": str(tmp_path_factory.mktemp("cache"))},
        "model": {"name": "cnn", "widths": [8, 16]},
        "algorithm": {"name": "fixmatch", "threshold": 0.5},
        "train": {"steps": 12, "batch_size": 6, "mu": 2, "eval_every": 6, "log_every": 1,
                  "progress": False, "tensorboard": False, "on_nonfinite": "skip"},
    })
    rc_before = dict(matplotlib.rcParams)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FixMatch, "training_step", _nan_loss_at(4))
        result = Trainer(cfg, run).fit()  # writes the report at the end
    assert result is not None and result.report == run / "report.html"
    assert dict(matplotlib.rcParams) == rc_before  # no global matplotlib state changed
    return run


def test_full_report_is_self_contained(full_run: Path) -> None:
    page = (full_run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((full_run / "summary.json").read_text())
    assert 'src="http' not in page and "href=" not in page and "<script" not in page
    assert "url(" not in page and "@import" not in page
    assert page.count("data:image/png;base64,") == len(list((full_run / "plots").glob("*.png")))
    assert f"{summary['final_acc']:.2%}" in page
    assert f"{summary['best_acc']:.2%} @ step {summary['best_step']}" in page
    assert f"fixmatch on {summary['dataset']}" in page
    for name in ("airplane", "beach", "dense_&lt;residential&gt;&amp;co"):
        assert name in page
    assert "<residential>" not in page and NAME not in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page  # config shown verbatim, escaped
    assert "train loss was NaN/inf 1 time(s), first at step 5" in page
    assert re.search(r"labeled</td>\s*<td[^>]*>6<", page)  # comment lines are not counted
    headings = re.findall(r"<h2>([^<(]+)", page)
    assert [h.strip() for h in headings] == [
        "Notes",
        "Data split",
        "Test accuracy",
        "Training losses",
        "Learning rate",
        "Pseudo-labels",
        "Other training metrics",
        "Per-class accuracy",
        "Confusion matrix",
        "Most confident wrong pseudo-labels",
        "Config",
    ]


def test_full_report_plots_and_markdown(full_run: Path) -> None:
    names = {p.name for p in (full_run / "plots").glob("*.png")}
    assert names == {
        "test_accuracy.png",
        "losses.png",
        "lr.png",
        "pseudo_labels.png",
        "metric_pseudo_acc_all.png",
        "metric_skipped_steps.png",
        "metric_time_data.png",
        "metric_time_model.png",
        "metric_time_optim.png",
        "per_class_accuracy.png",
        "confusion_matrix.png",
        "pseudo_label_errors.png",
    }
    for path in (full_run / "plots").iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (full_run / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(links) == sorted(f"plots/{name}" for name in names)
    assert (full_run / "config.yaml").read_text().rstrip("\n") in markdown


def test_only_metrics(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics.jsonl")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "80.00%" in page  # final/best accuracy taken from the test lines
    assert "metrics.jsonl: 1 bad line(s) skipped (35)." in page  # the truncated one
    assert "train loss was NaN/inf 1 time(s), first at step 10" in page
    assert "Confusion matrix" not in page and "Config" not in page and "Data split" not in page
    assert (tmp_path / "plots" / "test_accuracy.png").is_file()
    assert not (tmp_path / "plots" / "confusion_matrix.png").exists()


def test_eval_only_and_broken_files(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{not json", encoding="utf-8")
    evaluation = {"confusion_matrix": [[5, 1], [0, 4]]}  # no classes, no per-class accuracy
    (tmp_path / "eval.json").write_text(json.dumps(evaluation), encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "summary.json could not be read" in page
    assert (tmp_path / "plots" / "per_class_accuracy.png").is_file()  # from the matrix
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()


def test_empty_and_missing_run_dir(tmp_path: Path) -> None:
    assert write_report(tmp_path).is_file()
    with pytest.raises(CheckpointError, match="not found"):
        write_report(tmp_path / "nope")


def test_odd_values_do_not_crash(tmp_path: Path) -> None:
    summary = {"algorithm": None, "minutes": "n/a", "final_acc": None, "classes": "x", "seed": []}
    (tmp_path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    evaluation = {
        "classes": ["a", "b"],
        "per_class_accuracy": [None, 0.5],
        "confusion_matrix": [[0, 0], [None, 4]],
    }
    (tmp_path / "eval.json").write_text(json.dumps(evaluation), encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "n/a" in page and "non-finite confusion_matrix" in page
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()
