"""Tests for the run report (aerossl.engine.report)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib
import pytest

from aerossl.engine.report import write_report
from aerossl.errors import CheckpointError

CLASSES = ["airport", "beach", "dense_<residential>&co"]
CONFIG = "algorithm: fixmatch\nmodel: resnet18\ntrain:\n  steps: 60  # <b>not html</b>\n"


def _write_metrics(path: Path) -> None:
    """Train lines every 2 steps (one NaN loss, some missing keys), test lines every 20."""
    lines = []
    for step in range(0, 61, 2):
        row = {
            "step": step,
            "split": "train",
            "loss": 2.0 - step / 40,
            "loss/sup": 1.0,
            "loss/unsup": step / 100,
            "lr": 0.03 * (1 - step / 100),
            "mask_rate": step / 60,
            "pseudo_acc": 0.5 + step / 200,
            "sec_per_step": 0.1,
            "entropy": 1.0 - step / 90,
        }
        if step == 10:
            row["loss"] = math.nan
        if step == 12:
            row = {"step": step, "split": "train", "loss": 1.5, "pseudo_acc": None}
        lines.append(json.dumps(row))
    for step in (20, 40, 60):
        lines.append(
            json.dumps(
                {
                    "step": step,
                    "split": "test",
                    "acc": 0.5 + step / 200,
                    "loss": 1.0,
                    "acc_raw": 0.4 + step / 200,
                }
            )
        )
    lines.append(json.dumps({"step": 61, "split": "test"}))  # test line without any values
    lines.append('{"step": 62, "split": "tr')  # truncated last line of a running job
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with every input file the engine writes, reported once for the module."""
    run = tmp_path_factory.mktemp("full") / "run"
    (run / "split").mkdir(parents=True)
    _write_metrics(run / "metrics.jsonl")
    summary = {
        "algorithm": "fixmatch",
        "model": "resnet18",
        "dataset": "ucm",
        "image_size": 64,
        "seed": 1,
        "num_labeled": 6,
        "num_unlabeled": 30,
        "num_test": 9,
        "classes": CLASSES,
        "steps": 60,
        "best_step": 60,
        "best_acc": 0.8,
        "final_acc": 0.7777,
        "minutes": 1.25,
    }
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    evaluation = {
        "step": 60,
        "accuracy": 0.7777,
        "loss": 0.9,
        "classes": CLASSES,
        "per_class_accuracy": [1.0, 2 / 3, 2 / 3],
        "confusion_matrix": [[3, 0, 0], [1, 2, 0], [0, 1, 2]],
    }
    (run / "eval.json").write_text(json.dumps(evaluation), encoding="utf-8")
    (run / "config.yaml").write_text(CONFIG, encoding="utf-8")
    for name, count in (("labeled", 6), ("unlabeled", 30), ("test", 9)):
        header = f"# {name} images ({count}) of the dataset\n"
        (run / "split" / f"{name}.txt").write_text(header + "img.png\n" * count, "utf-8")
    rc_before = dict(matplotlib.rcParams)
    assert write_report(run) == run / "report.html"
    assert dict(matplotlib.rcParams) == rc_before  # no global matplotlib state changed
    return run


def test_full_report_is_self_contained(full_run: Path) -> None:
    page = (full_run / "report.html").read_text(encoding="utf-8")
    assert 'src="http' not in page and "href=" not in page and "<script" not in page
    assert "url(" not in page and "@import" not in page
    assert page.count("data:image/png;base64,") == len(list((full_run / "plots").glob("*.png")))
    assert "77.77%" in page and "80.00% @ step 60" in page and "fixmatch on ucm" in page
    for name in ("airport", "beach", "dense_&lt;residential&gt;&amp;co"):
        assert name in page
    assert "<residential>" not in page and "<b>not html</b>" not in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page  # config shown verbatim, escaped
    assert "NaN/inf 1 time(s), first at step 10" in page
    assert re.search(r"labeled</td>\s*<td[^>]*>6<", page)  # comment lines are not counted
    assert "bad line(s) skipped (36)" in page
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
        "Config",
    ]


def test_full_report_plots_and_markdown(full_run: Path) -> None:
    names = {p.name for p in (full_run / "plots").glob("*.png")}
    assert names == {
        "test_accuracy.png",
        "losses.png",
        "lr.png",
        "pseudo_labels.png",
        "metric_entropy.png",
        "metric_sec_per_step.png",
        "per_class_accuracy.png",
        "confusion_matrix.png",
    }
    for path in (full_run / "plots").iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (full_run / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(links) == sorted(f"plots/{name}" for name in names)
    assert CONFIG.rstrip("\n") in markdown


def test_only_metrics(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics.jsonl")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "80.00%" in page  # final/best accuracy taken from the test lines
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
