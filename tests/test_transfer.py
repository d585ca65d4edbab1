"""Transfer learning: weights files, head and first-convolution adaptation, frozen backbones."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

import aerossl
from aerossl.engine.trainer import Trainer
from aerossl.engine.transfer import adapt_in_channels, load_init, read_weights
from aerossl.errors import CheckpointError, ConfigError
from aerossl.models import create_model
from aerossl.models.normalize import Normalized
from aerossl.runs.loader import load_run_network
from aerossl.validate import config_from_dict


def network(num_classes: int = 5, channels: int = 3, widths=(16, 32, 64)) -> Normalized:
    return Normalized(create_model("cnn", num_classes, channels, widths=list(widths)),
                      [0.5] * channels, [0.25] * channels)


def config(root: Path, out: Path, **sections) -> dict:
    cfg = {
        "name": "t", "output_dir": str(out), "seed": 0,
        "data": {"root": str(root), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [16, 32, 64]},
        "algorithm": {"name": "supervised"},
        "train": {"steps": 6, "batch_size": 10, "eval_every": 6, "log_every": 3, "ema": 0,
                  "progress": False, "tensorboard": False, "lr": 0.05, "num_threads": 1},
        "report": [],
    }
    for key, value in sections.items():
        section, field = key.split("__")
        cfg[section][field] = value
    return cfg


class NotAWeight:
    """A pickled object that weights_only loading must refuse."""


def test_plain_state_dict_with_prefixes_loads_and_reports_keys(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = network()
    state = {f"module.{k}": v for k, v in source.backbone.state_dict().items()}
    state["module.projector.weight"] = torch.zeros(4, 64)
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    torch.manual_seed(2)
    target = network()
    report = load_init(target, tmp_path / "w.pth")
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(target.backbone.state_dict()[k], v), k
    assert report.unexpected == ["module.projector.weight"]
    assert report.missing == [] and report.head_replaced == ""
    assert torch.equal(target.mean, torch.full((3, 1, 1), 0.5))  # normalisation is the run's


def test_other_number_of_classes_replaces_the_head(tmp_path: Path) -> None:
    source = network(num_classes=10)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = network(num_classes=4)
    head_before = target.head.weight.clone()
    report = load_init(target, tmp_path / "w.pt")
    assert "10 outputs" in report.head_replaced and "4 classes" in report.head_replaced
    assert torch.equal(target.head.weight, head_before)
    assert torch.equal(target.backbone.stem_conv.weight, source.backbone.stem_conv.weight)


def test_first_convolution_is_adapted_to_other_channel_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = network(channels=3)
    torch.save(source.state_dict(), tmp_path / "rgb.pt")
    target = network(channels=5)
    with caplog.at_level(logging.INFO, logger="aerossl"):
        report = load_init(target, tmp_path / "rgb.pt")
    assert any("from 3 to 5 input channels" in line for line in report.adapted)
    assert "scaled by 3/5" in caplog.text
    w_src, w_new = source.backbone.stem_conv.weight, target.backbone.stem_conv.weight
    assert w_new.shape[1] == 5
    torch.testing.assert_close(w_new, adapt_in_channels(w_src, 5))
    grey = torch.rand(2, 1, 8, 8)  # a grey image: every channel equal -> same response
    torch.testing.assert_close(torch.nn.functional.conv2d(grey.expand(2, 5, 8, 8), w_new),
                               torch.nn.functional.conv2d(grey.expand(2, 3, 8, 8), w_src))


def test_shapes_that_do_not_fit_name_file_and_keys(tmp_path: Path) -> None:
    torch.save(network(widths=(8, 16, 32)).state_dict(), tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match=r"small\.pt does not fit .*stem\.0\.weight "
                       r"\(8, 3, 3, 3\) in the file vs \(16, 3, 3, 3\) here"):
        load_init(network(), tmp_path / "small.pt")
    torch.save({"encoder.layer.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt has no key of this network"):
        load_init(network(), tmp_path / "other.pt")


def test_files_that_are_not_weights_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a weights file"):
        read_weights(tmp_path / "notes.pt")
    torch.save({"model": NotAWeight()}, tmp_path / "code.pt")  # needs unpickling a class
    with pytest.raises(CheckpointError, match=r"code\.pt .*refused"):
        read_weights(tmp_path / "code.pt")
    torch.save({"lr": 0.1, "steps": 5}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain\.pt is not a state dict"):
        read_weights(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="weights file not found"):
        read_weights(tmp_path / "missing.pt")


def test_run_folder_init_linear_probe_and_backbone_lr(five_classes: Path, tmp_path: Path) -> None:
    source = aerossl.train({**config(five_classes, tmp_path), "name": "src"})
    # a linear probe on three of the classes: head replaced (other classes), backbone frozen
    three = tmp_path / "three"
    for name in sorted(p.name for p in five_classes.iterdir())[:3]:
        shutil.copytree(five_classes / name, three / name)
    cfg = config(three, tmp_path, model__init=str(source.run_dir), model__freeze_backbone=True)
    trainer = Trainer(config_from_dict({**cfg, "name": "probe"}))
    net = trainer.algorithm.model
    src_net, _ = load_run_network(source.run_dir)
    stem = net.backbone.stem_conv.weight.detach().clone()
    torch.testing.assert_close(stem, src_net.backbone.stem_conv.weight)
    head = net.head.weight.detach().clone()
    assert head.shape[0] == 3
    trainer.fit()
    assert torch.equal(net.backbone.stem_conv.weight, stem)  # frozen
    bn = net.backbone.stem[1]
    torch.testing.assert_close(bn.running_mean, src_net.backbone.stem[1].running_mean)
    assert not torch.equal(net.head.weight, head)  # the head learned

    # full fine-tuning with a 10x lower backbone learning rate than the head's
    cfg = config(three, tmp_path, model__init=str(source.run_dir), train__backbone_lr_scale=0.1)
    trainer = Trainer(config_from_dict({**cfg, "name": "ft"}))
    head_ids = {id(p) for p in trainer.algorithm.model.head.parameters()}
    for group in trainer.optimizer.param_groups:
        expected = 0.05 if all(id(p) in head_ids for p in group["params"]) else 0.005
        assert group["initial_lr"] == pytest.approx(expected)
    assert {len(g["params"]) for g in trainer.optimizer.param_groups} != {0}


def test_init_from_a_missing_file_or_bad_lr_scale_is_clear(five_classes: Path,
                                                              tmp_path: Path) -> None:
    cfg = config(five_classes, tmp_path, model__init=str(tmp_path / "nothing.pt"))
    with pytest.raises(CheckpointError, match="nothing.pt"):
        aerossl.train(cfg)
    with pytest.raises(ConfigError, match="train.backbone_lr_scale"):
        config_from_dict(config(five_classes, tmp_path, train__backbone_lr_scale=-1))
