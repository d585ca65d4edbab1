"""The engine's optimisation parts and the training options, each against a hand computation:
the learning-rate schedule, weight decay only on conv/linear weights, EMA warm-up,
``joint_batch`` with batch norm, and ``labeled_mix`` inside a real training step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import read_metrics, small_config
from torch import nn

import aerossl
from aerossl.algorithms import Batch, StepContext, get_algorithm
from aerossl.algorithms import mixing as algorithms_mixing
from aerossl.engine.optim import param_groups
from aerossl.engine.trainer import Trainer
from aerossl.models.ema import EMA
from aerossl.validate import config_from_dict

# ------------------------------------------------------------------ learning-rate schedule


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_logged_learning_rate_follows_warmup_then_the_schedule(
    five_classes: Path, tmp_path: Path, schedule: str
) -> None:
    steps, warmup, lr = 12, 3, 0.05
    cfg = small_config(five_classes, tmp_path, "supervised", train__steps=steps,
                       train__warmup_steps=warmup, train__lr_schedule=schedule,
                       train__log_every=1, train__eval_every=steps)
    result = aerossl.train(cfg)
    logged = {m["step"]: m["lr"] for m in read_metrics(result.run_dir) if m["split"] == "train"}
    assert sorted(logged) == list(range(1, steps + 1))
    for k, value in logged.items():  # after k optimiser steps the rate is that of step k
        if k < warmup:
            expected = lr * (k + 1) / warmup  # linear warm-up
        elif schedule == "cosine":
            expected = lr * math.cos(7 * math.pi * k / (16 * steps))  # FixMatch's decay
        else:
            expected = lr
        assert value == pytest.approx(expected, rel=1e-9), k
    if schedule == "cosine":  # ends at cos(7 pi / 16) ~ 0.2 of the peak, not at zero
        assert logged[steps] == pytest.approx(lr * math.cos(7 * math.pi / 16), rel=1e-9)


# ------------------------------------------------------------------ weight decay


def test_weight_decay_shrinks_conv_and_linear_weights_only() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(),
                          nn.LazyLinear(4))
    model(torch.randn(1, 2, 5, 5))  # materialise the lazy layer
    head = {id(p) for p in model[3].parameters()}
    groups = param_groups(model, weight_decay=0.1, lr=0.5, scaled=head, lr_scale=0.2)
    optimizer = torch.optim.SGD(groups, lr=0.5)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay moves a parameter
    optimizer.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["0.weight"], before["0.weight"] * (1 - 0.5 * 0.1))
    assert torch.allclose(after["3.weight"], before["3.weight"] * (1 - 0.5 * 0.2 * 0.1))
    for name in ("0.bias", "1.weight", "1.bias", "3.bias"):  # biases and norms: untouched
        assert torch.equal(after[name], before[name]), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# ------------------------------------------------------------------ EMA


def test_ema_warms_its_decay_up_then_uses_the_configured_one() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.99)
    # d = min(decay, (1 + k) / (10 + k)): 0.1 at the first update, 0.918 at update 100
    for step, decay in ((0, 1 / 10), (5, 6 / 15), (100, 101 / 110), (10_000, 0.99)):
        old = [p.detach().clone() for p in ema.module.parameters()]
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
            model[1].running_mean.add_(3.0)
        ema.update(model, step)
        for e, o, p in zip(ema.module.parameters(), old, model.parameters(), strict=True):
            assert torch.allclose(e, decay * o + (1 - decay) * p), step
        assert torch.equal(ema.module[1].running_mean, model[1].running_mean)  # copied


# ------------------------------------------------------------------ joint_batch and batch norm


def _bn_model() -> nn.Module:
    """Batch norm with momentum 1: its running mean is the batch mean of the last forward."""
    torch.manual_seed(0)
    return nn.Sequential(nn.BatchNorm2d(1, momentum=1.0, affine=False), nn.Flatten(),
                         nn.Linear(4, 3))


@pytest.mark.parametrize("joint", [False, True])
def test_joint_batch_normalises_the_three_views_together(joint: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    x, uw, us = (torch.rand(n, 1, 2, 2, generator=gen) + shift
                 for n, shift in ((2, 0.0), (3, 5.0), (3, -5.0)))
    labels = torch.tensor([0, 2])
    model = _bn_model()
    cls = get_algorithm("fixmatch")
    algo = cls(model, cls.Params(threshold=0.0, joint_batch=joint), num_classes=3).train()
    out = algo.training_step(Batch({"weak": x}, labels, {"weak": uw, "strong": us}),
                             StepContext(0, 10))

    reference = _bn_model().train()
    if joint:  # one forward: statistics of labelled, weak and strong images together
        logits = reference(torch.cat([x, uw, us]))
        lx, lw, ls = logits.split([2, 3, 3])
        seen = torch.cat([x, uw, us])
    else:  # weak view alone (no autograd), then labelled + strong
        with torch.no_grad():
            lw = reference(uw)
        lx, ls = reference(torch.cat([x, us])).split([2, 3])
        seen = torch.cat([x, us])
    assert torch.allclose(model[0].running_mean, seen.mean(dim=(0, 2, 3)))
    sup = nn.functional.cross_entropy(lx, labels)
    unsup = nn.functional.cross_entropy(ls, lw.argmax(1))  # threshold 0: every image kept
    assert out.log["loss/sup"].item() == pytest.approx(sup.item(), rel=1e-5)
    assert out.log["loss/unsup"].item() == pytest.approx(unsup.item(), rel=1e-5)


# ------------------------------------------------------------------ labeled_mix in a real step


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_labeled_mix_mixes_the_labelled_batch_of_every_engine_step(
    five_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    mix = algorithms_mixing.mix_batch

    def spy(x, targets, mode_, alpha):
        mixed, soft = mix(x, targets, mode_, alpha)
        calls.append((x.detach().clone(), targets.clone(), soft.clone()))
        return mixed, soft

    monkeypatch.setattr(algorithms_mixing, "mix_batch", spy)
    runs = {}
    for mixing in ("none", mode):
        cfg = config_from_dict(small_config(
            five_classes, tmp_path / mixing, "fixmatch", train__steps=3, train__log_every=1,
            train__eval_every=3, algorithm__labeled_mix=mixing))
        calls.clear()
        runs[mixing] = Trainer(cfg, tmp_path / mixing / "run").fit()
        if mixing == "none":
            assert calls == []
    assert len(calls) == 3  # once per training step, not in evaluation
    for x, targets, soft in calls:
        assert x.shape[0] == 10 and targets.shape == (10, 5)  # the labelled batch, one-hot
        assert torch.equal(targets.sum(1), torch.ones(10))
        assert torch.allclose(soft.sum(1), torch.ones(10), atol=1e-6)
        assert not torch.equal(soft, targets) or mode == "cutmix"  # mixed targets
    rows = {k: [m for m in read_metrics(r.run_dir) if m["split"] == "train"]
            for k, r in runs.items()}
    assert rows["none"][0]["loss/sup"] != rows[mode][0]["loss/sup"]  # the loss saw the mix
