"""Slow tests on the real UC Merced images in ../shared (skipped where they are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

import aerossl

UCM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucmerced"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not UCM.is_dir(), reason="../shared/data/ucmerced is not available"),
]


def test_fixmatch_on_full_ucmerced_beats_chance_by_far(tmp_path: Path) -> None:
    """All 2,100 real images (44 of odd sizes) through cache, split and a short FixMatch run."""
    result = aerossl.train("ucmerced_fixmatch", [
        f"data.root={UCM}", f"output_dir={tmp_path}", "data.image_size=32", "train.steps=300",
        "train.eval_every=150", "train.progress=false", "report=[html]",
    ])
    assert result.final_acc > 0.25  # chance is 1/21
    summary = aerossl.evaluate(result.run_dir)
    assert summary["num_test"] == 1050
    assert (result.run_dir / "report.html").is_file()
