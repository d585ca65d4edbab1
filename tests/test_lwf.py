"""Learning without Forgetting: its loss by hand, and a transfer run that keeps the old head."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import DEMO_CLASSES, small_config

import aerossl
from aerossl.algorithms import StepContext, get_algorithm
from aerossl.algorithms.base import Batch
from aerossl.algorithms.lwf import lwf_loss
from aerossl.cli import main
from aerossl.engine.trainer import Trainer
from aerossl.errors import ConfigError
from aerossl.pipelines.old_task import old_task_accuracy, old_task_network
from aerossl.runs.loader import load_run_network


def test_lwf_loss_matches_a_hand_computation() -> None:
    old = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    original = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    t = 2.0
    # image 1: targets softmax([1, 0, 0]), log-probs log softmax([0.5, 1, 0])
    z1 = math.e + 2
    y1 = [math.e / z1, 1 / z1, 1 / z1]
    lse1 = math.log(math.exp(0.5) + math.e + 1)
    ce1 = -sum(y * (s - lse1) for y, s in zip(y1, [0.5, 1.0, 0.0], strict=True))
    # image 2: uniform targets, log softmax([0, 0, 1.5])
    lse2 = math.log(2 + math.exp(1.5))
    ce2 = -sum(s - lse2 for s in [0.0, 0.0, 1.5]) / 3
    assert float(lwf_loss(old, original, t)) == pytest.approx((ce1 + ce2) / 2, rel=1e-6)
    # T=1 and identical logits: the entropy of the softmax
    p = torch.softmax(old, 1)
    assert float(lwf_loss(old, old, 1.0)) == pytest.approx(float(-(p * p.log()).sum(1).mean()))


@pytest.fixture(scope="module")
def source_and_target(five_classes: Path, tmp_path_factory: pytest.TempPathFactory
                      ) -> tuple[Path, Path, Path]:
    """A source run on 3 classes (a few steps) and a target folder of the other 2."""
    base = tmp_path_factory.mktemp("lwf")
    for name, chosen in (("source", DEMO_CLASSES[:3]), ("target", DEMO_CLASSES[3:])):
        for c in chosen:
            (base / name / c).parent.mkdir(parents=True, exist_ok=True)
            (base / name / c).symlink_to(five_classes / c, target_is_directory=True)
    cfg = small_config(base / "source", base / "runs", "supervised", train__steps=6,
                       train__ema=0.0)
    cfg["name"] = "source"
    source = aerossl.train(cfg).run_dir
    return source, base / "target", base


def test_lwf_step_is_new_ce_plus_weighted_distillation(source_and_target) -> None:
    source, target, base = source_and_target
    cfg = small_config(target, base / "runs", "lwf", algorithm__source=str(source),
                       algorithm__old_weight=0.5, algorithm__temperature=3.0,
                       model__init=str(source))
    trainer = Trainer(aerossl.validate.config_from_dict(cfg))
    algo = trainer.algorithm
    assert algo.old_classes == DEMO_CLASSES[:3] and algo.model.head.out_features == 2
    source_net, _ = load_run_network(source)
    assert torch.equal(algo.old_head.weight, source_net.head.weight)  # the old head, kept
    algo.train()
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    u = torch.rand(6, 3, 32, 32)
    y = torch.tensor([0, 1, 1, 0])
    out = algo.training_step(Batch({"x": x}, y, {"x": u}), StepContext(5, 10))
    both = torch.cat([x, u])
    with torch.no_grad():
        features = algo.model.forward_features(both)
        new = torch.nn.functional.cross_entropy(algo.model.forward_head(features[:4]), y)
        old = lwf_loss(algo.old_head(features), source_net(both), 3.0)
    assert float(out.log["loss/new"]) == pytest.approx(float(new), rel=1e-5)
    assert float(out.log["loss/old"]) == pytest.approx(float(old), rel=1e-5)
    assert float(out.loss.detach()) == pytest.approx(float(new + 0.5 * old), rel=1e-5)
    # warm-up: the new head alone, the backbone gets no gradient
    algo.zero_grad()
    warm = get_algorithm("lwf").Params(source=str(source), warmup_steps=3)
    algo.p = warm
    out = algo.training_step(Batch({"x": x}, y, {"x": u}), StepContext(1, 10))
    out.loss.backward()
    assert "loss/old" not in out.log
    assert algo.model.head.weight.grad is not None
    assert all(p.grad is None for n, p in algo.model.named_parameters() if "head" not in n)


def test_lwf_run_keeps_the_old_task_measurable(source_and_target, capsys) -> None:
    source, target, base = source_and_target
    cfg = small_config(target, base / "runs", "lwf", train__steps=8)
    cfg["name"] = "lwf"
    result = aerossl.finetune(source, cfg, algorithm=None)  # sets model.init and source
    network, classes = old_task_network(result.run_dir)
    assert classes == DEMO_CLASSES[:3] and network.head.out_features == 3
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    trained_head = last["algorithm"]["old_head.weight"]
    assert torch.equal(network.head.weight, trained_head)
    assert not torch.equal(trained_head, load_run_network(source)[0].head.weight)
    acc = old_task_accuracy(result.run_dir, source)
    assert 0.0 <= acc <= 1.0
    assert main(["evaluate", str(result.run_dir), "--old-task", str(source)]) == 0
    assert f"old-task accuracy {acc:.4f}" in capsys.readouterr().out
    # plain fine-tuning: the old task is the fine-tuned backbone with the source's head
    ft = aerossl.finetune(source, {**cfg, "name": "ft", "algorithm": {"name": "supervised"}})
    net, _ = old_task_network(ft.run_dir)
    assert torch.equal(net.head.weight, load_run_network(source)[0].head.weight)


def test_lwf_refuses_a_network_not_started_from_the_source(source_and_target) -> None:
    source, target, base = source_and_target
    cfg = small_config(target, base / "runs", "lwf", algorithm__source=str(source))
    with pytest.raises(ConfigError, match="does not start from .*set model.init"):
        Trainer(aerossl.validate.config_from_dict(cfg))
    with pytest.raises(ConfigError, match="algorithm.source: 'lwf' needs"):
        Trainer(aerossl.validate.config_from_dict(small_config(target, base / "runs", "lwf")))
