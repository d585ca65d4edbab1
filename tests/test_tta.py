"""Test-time augmentation (``--tta flips|dihedral``): the averaged network is invariant to the
group it averages over, equals the hand-computed mean, and reaches evaluate/predict/map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import test_predict
import torch
from PIL import Image
from test_predict import CLASSES, read_rows
from torch import nn

import aerossl
from aerossl.cli import build_parser
from aerossl.data import demo_dataset_path
from aerossl.models import tta as tta_module

run_dir = test_predict.run_dir  # the trained 3-class run of test_predict (a fixture)


class Linear(nn.Module):
    """A network with no symmetry at all: a random linear map of the flattened image."""

    def __init__(self, size: int = 5, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def d4(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 images of the dihedral group, written out by hand."""
    turns = [torch.rot90(x, k, (2, 3)) for k in range(4)]
    return turns + [t.flip(3) for t in turns]


def test_dihedral_tta_is_the_mean_over_all_eight_symmetries_and_invariant_to_them() -> None:
    net = Linear()
    x = torch.rand(2, 3, 5, 5)
    wrapped = tta_module.TestTimeAugment(net, "dihedral")
    expected = torch.stack([net(v) for v in d4(x)]).mean(0)
    assert torch.allclose(wrapped(x), expected, atol=1e-6)
    assert len({tuple(v.flatten().tolist()) for v in d4(x)}) == 8
    for v in d4(x):
        assert torch.allclose(wrapped(v), wrapped(x), atol=1e-5)
    assert not torch.allclose(net(torch.rot90(x, 1, (2, 3))), net(x), atol=1e-3)


def test_flips_tta_averages_four_views_invariant_to_flips_not_to_quarter_turns() -> None:
    net = Linear()
    x = torch.rand(2, 3, 5, 5)
    wrapped = tta_module.TestTimeAugment(net, "flips")
    views = [x, x.flip(3), x.flip(2), x.flip(2, 3)]
    assert torch.allclose(wrapped(x), torch.stack([net(v) for v in views]).mean(0), atol=1e-6)
    assert torch.allclose(wrapped(x.flip(3)), wrapped(x), atol=1e-5)
    assert torch.allclose(wrapped(x.flip(2)), wrapped(x), atol=1e-5)
    assert not torch.allclose(wrapped(torch.rot90(x, 1, (2, 3))), wrapped(x), atol=1e-3)


def test_none_is_the_network_itself_and_an_unknown_mode_is_refused() -> None:
    net = Linear().eval()
    assert tta_module.with_tta(net, "none") is net
    assert not tta_module.with_tta(net, "flips").training
    with pytest.raises(aerossl.ConfigError, match="unknown test-time augmentation 'rot'"):
        tta_module.with_tta(net, "rot")


def test_predict_with_dihedral_tta_gives_a_turned_copy_the_same_answer(
        run_dir: Path, tmp_path: Path) -> None:
    """Through the CLI: an image and its quarter-turned copy get the same probabilities with
    ``--tta dihedral`` (and different ones without)."""
    src = sorted((demo_dataset_path() / "beach").iterdir())[0]
    img = Image.open(src).convert("RGB").resize((32, 32))  # the run's size: no resampling
    folder = tmp_path / "in"
    folder.mkdir()
    img.save(folder / "a.png")
    img.transpose(Image.Transpose.ROTATE_90).save(folder / "b.png")

    def probs(tta: str) -> list[np.ndarray]:
        out = tmp_path / f"{tta}.csv"
        args = build_parser().parse_args(["pseudo-label", str(run_dir), str(folder), "--out",
                                          str(out), "--tta", tta])
        assert args.func(args) == 0
        return [np.array([float(r[f"prob_{c}"]) for c in CLASSES]) for r in read_rows(out)]

    a, b = probs("dihedral")
    assert np.allclose(a, b, atol=1e-4)
    a0, b0 = probs("none")
    assert not np.allclose(a0, b0, atol=1e-4)


def test_evaluate_reports_its_tta_and_map_accepts_it(run_dir: Path, capsys) -> None:
    plain = aerossl.evaluate(run_dir)
    flips = aerossl.evaluate(run_dir, tta="flips")
    assert plain["tta"] == "none" and flips["tta"] == "flips"
    assert flips["num_test"] == plain["num_test"]
    assert flips["loss"] != pytest.approx(plain["loss"], abs=1e-6)  # other inputs were seen
    args = build_parser().parse_args(["evaluate", str(run_dir), "--tta", "dihedral"])
    assert args.func(args) == 0 and "tta dihedral" in capsys.readouterr().out
    assert build_parser().parse_args(["map", str(run_dir), "scene.tif", "--tta",
                                      "flips"]).tta == "flips"
