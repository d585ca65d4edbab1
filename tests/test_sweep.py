"""The label-budget sweep: a small grid, stopped after one cell and resumed; table and plot."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import small_config

import aerossl
from aerossl.cli import main
from aerossl.engine.trainer import Trainer
from aerossl.errors import ConfigError
from aerossl.pipelines import stages as pipeline
from aerossl.pipelines.sweep import parse_budget
from aerossl.validate import config_from_dict


def _labeled(run_dir: Path) -> list[str]:
    return [ln for ln in (run_dir / "split" / "labeled.txt").read_text().splitlines()
            if not ln.startswith("#")]


def test_parse_budget() -> None:
    assert parse_budget("4").per_class == 4 and parse_budget(10).tag == "10"
    assert parse_budget("10%").percent == 10 and parse_budget("10%").tag == "10pct"
    assert parse_budget("ALL").per_class is None and parse_budget("all").tag == "all"
    for bad in ("0", "-1", "150%", "four"):
        with pytest.raises(ConfigError, match="--labels"):
            parse_budget(bad)


@pytest.mark.slow
def test_sweep_stopped_after_one_cell_resumes_and_writes_table_and_plot(
    five_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = small_config(five_classes, tmp_path, "fixmatch", train__steps=3, train__eval_every=3,
                       train__mu=1)
    grid = {"labels": ["1", "10%"], "methods": ["supervised", "fixmatch"], "seeds": [0, 1]}
    real_run_stage = pipeline.run_stage
    calls: list[Path] = []

    def stop_in_second_cell(raw: dict, run_dir: Path, source: str) -> dict:
        calls.append(run_dir)
        if len(calls) < 2:
            return real_run_stage(raw, run_dir, source)
        Trainer(config_from_dict(raw), run_dir).fit(until=2)  # then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_stage", stop_in_second_cell)
    with pytest.raises(KeyboardInterrupt):
        aerossl.sweep(cfg, **grid, name="grid")
    root = tmp_path / "grid"
    first, second = root / "supervised_1_s0", root / "fixmatch_1_s0"
    assert (first / "summary.json").is_file() and not (second / "summary.json").exists()
    assert (second / "checkpoints" / "last.pt").is_file()
    assert "1 of 8 cells finished" in (root / "sweep.md").read_text()
    stamp = (first / "summary.json").stat().st_mtime_ns

    monkeypatch.setattr(pipeline, "run_stage", real_run_stage)
    with caplog.at_level(logging.INFO, logger="aerossl"):
        result = aerossl.sweep(cfg, **grid, name="grid")
    assert (first / "summary.json").stat().st_mtime_ns == stamp  # finished cell skipped
    assert "stage supervised_1_s0: already finished" in caplog.text
    assert "stage fixmatch_1_s0: resuming" in caplog.text
    assert json.loads((second / "summary.json").read_text())["steps"] == 3

    # the same split per seed for every method; smaller budgets nest in larger ones
    assert _labeled(first) == _labeled(second)
    assert _labeled(first) != _labeled(root / "supervised_1_s1")
    assert set(_labeled(first)) < set(_labeled(root / "supervised_10pct_s0"))
    assert len(_labeled(first)) == 5 and len(_labeled(root / "fixmatch_10pct_s1")) == 10

    rows = list(csv.DictReader((root / "sweep.csv").open()))
    assert len(rows) == 8 and {(r["method"], r["budget"], r["seed"]) for r in rows} == {
        (m, b, s) for m in grid["methods"] for b in ("1", "10%") for s in ("0", "1")}
    data = json.loads((root / "sweep.json").read_text())
    for g in data["groups"]:
        accs = [float(r["final_acc"]) for r in rows
                if r["method"] == g["method"] and r["budget"] == g["budget"]]
        assert g["mean"] == pytest.approx(np.mean(accs))
        assert g["std"] == pytest.approx(np.std(accs, ddof=1))
        assert g["n"] == 2 and g["num_labeled"] == (5 if g["budget"] == "1" else 10)
    table = (root / "sweep.md").read_text()
    sup = next(g for g in data["groups"] if g["method"] == "supervised" and g["budget"] == "1")
    assert "| labels | labelled images | supervised | fixmatch |" in table
    low = min(float(r["min_class_acc"]) for r in rows
              if r["method"] == "supervised" and r["budget"] == "1")
    assert sup["min_class"] == pytest.approx(low)
    assert (f"| 1 | 5 | {100 * sup['mean']:.1f} ± {100 * sup['std']:.1f} (2), lowest class "
            f"{100 * low:.1f} |") in table
    assert "| 10% (2/class) | 10 |" in table and "8 of 8 cells finished" in table
    for png in (result.files["plot"], result.files["compare_plot"]):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    compare = (root / "compare.md").read_text()
    assert all(c["name"] in compare for c in result.cells)

    # the command line: overrides after the lists, every cell already finished
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["sweep", str(path), "--labels", "1", "10%", "--methods", "supervised",
                 "fixmatch", "--seeds", "0", "1", "train.steps=3", "--name", "grid",
                 "--no-plots"]) == 0


def test_sweep_cells_share_the_split_of_their_seed(five_classes: Path, tmp_path: Path) -> None:
    """The fast sweep check of the default suite: one budget, two methods, no plots."""
    cfg = small_config(five_classes, tmp_path, "fixmatch", train__steps=2, train__eval_every=2,
                       train__mu=1)
    result = aerossl.sweep(cfg, labels=["2"], methods=["supervised", "fixmatch"], seeds=[3],
                           name="mini", plots=False)
    a, b = (tmp_path / "mini" / n for n in ("supervised_2_s3", "fixmatch_2_s3"))
    assert _labeled(a) == _labeled(b) and len(_labeled(a)) == 10
    assert [(c["method"], c["num_labeled"], c["steps"]) for c in result.cells] == [
        ("supervised", 10, 2), ("fixmatch", 10, 2)]
    for cell in result.cells:  # the lowest per-class accuracy, from the run's evaluation
        per_class = json.loads((tmp_path / "mini" / cell["name"] / "eval.json").read_text())[
            "per_class_accuracy"]
        assert cell["min_class_acc"] == pytest.approx(min(per_class))
        assert cell["min_class_acc"] <= cell["final_acc"]
    assert set(result.files) == {"markdown", "csv", "json"}
    assert not (tmp_path / "mini" / "sweep.png").exists()
    assert "| 2 | 10 |" in (tmp_path / "mini" / "sweep.md").read_text()


def test_sweep_report_tables_the_finished_cells_and_trains_nothing(
    five_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--report``: a grid larger than what ran; only finished cells in the table, no run."""
    cfg = small_config(five_classes, tmp_path, "fixmatch", train__steps=2, train__eval_every=2,
                       train__mu=1)
    aerossl.sweep(cfg, labels=["2"], methods=["supervised"], seeds=[0], name="part",
                  plots=False)

    def no_training(*args: object, **kwargs: object) -> dict:
        raise AssertionError("report mode trained a cell")

    monkeypatch.setattr(pipeline, "run_stage", no_training)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["sweep", str(path), "--labels", "1", "2", "--methods", "supervised",
                 "fixmatch", "--seeds", "0", "1", "--name", "part", "--no-plots",
                 "--report"]) == 0
    root = tmp_path / "part"
    assert not (root / "fixmatch_2_s0").exists() and not (root / "supervised_1_s0").exists()
    rows = list(csv.DictReader((root / "sweep.csv").open()))
    assert [(r["method"], r["budget"], r["seed"]) for r in rows] == [("supervised", "2", "0")]
    table = (root / "sweep.md").read_text()
    assert "1 of 8 cells finished" in table and "| 2 | 10 |" in table and "| 1 |" not in table
    with pytest.raises(ConfigError, match="no finished cell"):
        aerossl.sweep(cfg, labels=["4"], methods=["supervised"], seeds=[0], name="part",
                      train=False)


def test_recipe_choice_ranks_by_the_mean_over_shared_cells_not_the_best_cell(
        tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from recipe_choice import choose, load_groups

    def sweep_json(folder: Path, accs: dict[tuple[str, int], float]) -> Path:
        folder.mkdir()
        groups = [{"method": m, "budget": str(k), "labels_per_class": k, "mean": a, "std": 0.0,
                   "n": 1, "min_class": a - 0.2} for (m, k), a in accs.items()]
        (folder / "sweep.json").write_text(json.dumps({"groups": groups}))
        return folder

    # 'peaky' has the best single cell, 'steady' the best mean; a cell only one method has
    # (set B, 4 labels) does not count
    a = sweep_json(tmp_path / "a", {("peaky", 1): 0.95, ("steady", 1): 0.80,
                                    ("peaky", 2): 0.60, ("steady", 2): 0.85})
    b = sweep_json(tmp_path / "b", {("peaky", 1): 0.70, ("steady", 1): 0.75,
                                    ("peaky", 4): 0.99})
    ranking, shared = choose({"A": load_groups(a), "B": load_groups(b)}, ["peaky", "steady"])
    assert shared == [("A", 1), ("A", 2), ("B", 1)]
    assert [r["method"] for r in ranking] == ["steady", "peaky"]
    assert ranking[0]["mean"] == pytest.approx((0.80 + 0.85 + 0.75) / 3)
    assert ranking[1]["worst"] == pytest.approx(0.60)
    assert ranking[0]["mean_lowest_class"] == pytest.approx((0.60 + 0.65 + 0.55) / 3)


def test_recipe_choice_counts_only_the_seeds_every_method_has(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from recipe_choice import choose, load_balanced

    # 'b' has an extra seed 1 at 1 label (a lucky split); the other methods stop at seed 0
    accs = {("a", 1, 0): 0.60, ("b", 1, 0): 0.50, ("b", 1, 1): 0.90, ("sup", 1, 0): 0.40,
            ("a", 2, 0): 0.70, ("a", 2, 1): 0.80, ("b", 2, 0): 0.72, ("b", 2, 1): 0.74}
    cells = [{"method": m, "budget": str(k), "labels_per_class": k, "seed": s, "final_acc": a,
              "min_class_acc": a - 0.3, "num_labeled": 21 * k} for (m, k, s), a in accs.items()]
    cells.append({"method": "a", "budget": "2", "labels_per_class": 2, "seed": 2,
                  "final_acc": None,
                  "num_labeled": 42})  # an unfinished cell does not count
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps({"cells": cells, "groups": []}))
    groups, left_out = load_balanced(folder, ["sup", "a", "b"])
    assert left_out == [("b", 1, 1)]
    assert groups[("b", 1)]["mean"] == pytest.approx(0.50)
    assert groups[("b", 1)]["seeds"] == [0]
    # supervised runs no 2-label cell, so it does not restrict that budget's seeds
    assert groups[("a", 2)]["n"] == 2 and groups[("a", 2)]["std"] == pytest.approx(0.0707, 1e-3)
    ranking, _ = choose({"S": groups}, ["a", "b"])
    # counting b's extra seed would rank b first: (0.70 + 0.73) / 2 against (0.60 + 0.75) / 2
    assert [r["method"] for r in ranking] == ["a", "b"]
    assert ranking[0]["mean"] == pytest.approx((0.60 + 0.75) / 2)


def test_recipe_choice_reads_a_candidate_from_another_sweep_under_its_own_name(
        tmp_path: Path) -> None:
    """A method run with options in its own sweep (same method name as a plain row of the
    main sweep) joins as a separate candidate, balanced on the same seeds."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from recipe_choice import extra_cells, load_balanced

    def sweep(folder: Path, accs: dict[tuple[str, int, int], float]) -> Path:
        folder.mkdir()
        cells = [{"method": m, "budget": str(k), "labels_per_class": k, "seed": s,
                  "final_acc": a, "min_class_acc": a - 0.3, "num_labeled": 21 * k}
                 for (m, k, s), a in accs.items()]
        (folder / "sweep.json").write_text(json.dumps({"cells": cells, "groups": []}))
        return folder

    main = sweep(tmp_path / "main", {("lp", 2, 0): 0.70, ("lp", 2, 1): 0.74,
                                     ("fm", 2, 0): 0.72, ("fm", 2, 1): 0.76})
    other = sweep(tmp_path / "other", {("lp", 2, 0): 0.90, ("lp", 2, 1): 0.80,
                                       ("lp", 2, 2): 0.99, ("fm", 2, 0): 0.10})
    extra = extra_cells(other, "lp", "lp+c")
    assert {c["method"] for c in extra} == {"lp+c"}  # other's fm cell is not read
    groups, left_out = load_balanced(main, ["fm", "lp", "lp+c"], extra)
    assert groups[("lp", 2)]["mean"] == pytest.approx(0.72)  # main's own rows unchanged
    assert groups[("lp+c", 2)]["mean"] == pytest.approx(0.85)  # seeds 0 and 1 only
    assert left_out == [("lp+c", 2, 2)]
    with pytest.raises(SystemExit, match="no finished missing"):
        extra_cells(other, "missing", "x")


def test_label_propagation_baseline_follows_the_pool_graph_not_the_nearest_label() -> None:
    """Two chains of directions 0.3 rad apart, each labelled at one image: a test point at
    cluster 0's far end is nearer to cluster 1's labelled image than to its own, and
    propagation along the chain still gets it right."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from pretrained_ucmerced import propagate

    angles0 = np.linspace(0.0, 0.7, 40)  # cluster 0: a chain of directions from 0 to 0.7 rad
    angles1 = np.linspace(1.0, 1.5, 40)  # cluster 1, starting 0.3 rad past cluster 0's end
    angles = np.concatenate([angles0, angles1, [0.65, 1.3]])  # two test points
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    pool, test = np.arange(80), np.array([80, 81])
    labeled, labels = np.array([0, 40]), np.array([0, 1])  # each chain's first image
    pool_scores, test_scores = propagate(features, labeled, labels, pool, test, 2, k=4)
    truth = np.repeat([0, 1], 40)
    assert (pool_scores.argmax(1) == truth).all()
    assert test_scores.argmax(1).tolist() == [0, 1]
    # the nearest labelled image is cluster 1's for both test points: the graph decides
    nearest = np.abs(angles[[80, 81]][:, None] - angles[labeled][None, :]).argmin(1)
    assert nearest.tolist() == [1, 1]


def test_benchmark_results_header_names_machine_command_and_load(tmp_path: Path,
                                                                  capsys) -> None:
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from report import results_header, write_results

    head = results_header("A title", "x.py", argv=["--threads", "1"], meanwhile="a sweep",
                          about="One sentence.", software="torch 9", load=1.234)
    assert head[0] == "# A title" and head[-1] == ""
    assert head[2] == "Written by `benchmarks/x.py` (see its docstring). One sentence."
    assert f"{os.cpu_count()} cores" in head[4] and head[4].endswith("; torch 9")
    assert head[5] == "- command: `python benchmarks/x.py --threads 1`"
    assert head[6] == "- load average before: 1.23; meanwhile: a sweep"
    plain = results_header("T", "x.py", argv=[], meanwhile="nothing")
    assert plain[2].endswith("(see its docstring).") and "; torch" not in plain[4]
    assert plain[5] == "- command: `python benchmarks/x.py`" and plain[6] == "- meanwhile: nothing"
    quoted = results_header("T", "x.py", argv=["--meanwhile", "a sweep"], meanwhile="a sweep")
    assert quoted[5] == "- command: `python benchmarks/x.py --meanwhile 'a sweep'`"
    write_results(tmp_path / "r.md", "body")
    assert (tmp_path / "r.md").read_text() == "body" and "body" in capsys.readouterr().out


def test_tta_benchmark_sets_each_mode_beside_the_baseline_per_method(tmp_path: Path,
                                                                     monkeypatch) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import tta

    rows = [{"run": f"s/{m}_{s}", "method": m, "labels": 2, "seed": s,
             "none": (acc, 10.0, 0.1), "dihedral": (acc + gain, 20.0, 0.8)}
            for m, s, acc, gain in [("a", 0, 70.0, 1.0), ("a", 1, 80.0, -0.4),
                                    ("b", 0, 60.0, 2.0)]]
    per_run = tta.table(rows, ["none", "dihedral"])
    assert per_run[2] == "| s/a_0 | a | 2 | 0 | - | 70.0 (10) | 71.0 (20) | +1.0 | 0.1 / 0.8 |"
    summary = tta.summary(rows, ["none", "dihedral"])
    assert summary[2] == "| 2 | a | 2 (0, 1) | 75.0 | 75.3 | +0.3 (+1.0, -0.4) |"
    assert summary[3].startswith("| 2 | b | 1 (0) | 60.0 | 62.0 | +2.0")
    # rows kept in OUT.json join a later table with the command that measured them
    measured = {"date": "then", "command": "python benchmarks/tta.py RUN", "meanwhile": "x"}
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"modes": ["none", "dihedral"],
                                "rows": [{**r, "measured": measured} for r in rows]}))
    out = tmp_path / "all.md"
    monkeypatch.setattr(sys, "argv", ["tta.py", "--include", str(part), "--out", str(out)])
    tta.main()
    text = out.read_text()
    assert "- rows s/a_0, s/a_1, s/b_0: measured then by `python benchmarks/tta.py RUN`" in text
    assert "| 2 | a | 2 (0, 1) | 75.0 | 75.3 |" in text
    assert len(json.loads(out.with_suffix(".json").read_text())["rows"]) == 3
    monkeypatch.setattr(sys, "argv", ["tta.py", "--include", str(part), "--modes", "none"])
    with pytest.raises(SystemExit):
        tta.main()
