"""``aerossl compare``: a table and an accuracy plot of finished runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import aerossl
from aerossl.cli import build_parser
from aerossl.data import demo_dataset_path
from aerossl.errors import CheckpointError
from aerossl.runs.compare import accuracy_curve, compare_runs, write_comparison


def small_config(root: Path, out: Path, algorithm: str) -> dict:
    return {
        "name": algorithm, "output_dir": str(out), "seed": 0,
        "data": {"root": str(root), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [8, 16, 16]},
        "algorithm": {"name": algorithm},
        "train": {"steps": 6, "batch_size": 8, "mu": 2, "eval_every": 3, "log_every": 3,
                  "progress": False, "tensorboard": False, "lr": 0.05},
        "report": [],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("ucm3")
    for name in ["agricultural", "beach", "forest"]:
        shutil.copytree(demo_dataset_path() / name, root / name)
    out = tmp_path_factory.mktemp("runs")
    return [aerossl.train(small_config(root, out, a)).run_dir for a in ("supervised", "fixmatch")]


def test_table_rows_and_plot(runs: list[Path], tmp_path: Path) -> None:
    rows = compare_runs(runs)
    assert [r["method"] for r in rows] == ["supervised", "fixmatch"]
    for r, run in zip(rows, runs, strict=True):
        assert r["run"] == run.name and r["model"] == "cnn" and r["labels"] == 12
        assert 0 <= r["final_acc"] <= 1 and r["best_acc"] >= 0 and r["steps"] == 6
        assert accuracy_curve(run)[0] == [3, 6]
    table, png = write_comparison(runs, tmp_path / "plots" / "cmp.png")
    lines = table.splitlines()
    assert lines[0].startswith("| run") and "final acc" in lines[0] and len(lines) == 4
    assert "supervised" in lines[2] and "fixmatch" in lines[3]
    assert f"{rows[1]['final_acc']:.4f}" in lines[3]
    assert png == tmp_path / "plots" / "cmp.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cli_and_bad_folders(runs: list[Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    args = parser.parse_args(["compare", *map(str, runs), "--plot", str(tmp_path / "c.png")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "fixmatch" in out and f"plot: {tmp_path / 'c.png'}" in out
    with pytest.raises(CheckpointError, match="nowhere"):
        compare_runs([runs[0], tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty"):
        compare_runs([tmp_path / "empty"])
    (tmp_path / "empty" / "summary.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="summary.json"):
        compare_runs([tmp_path / "empty"])
