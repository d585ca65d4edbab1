"""Core losses against hand computations on tiny inputs."""

from __future__ import annotations

import math

import torch
from conftest import FixedLogits
from torch import nn

from aerossl.algorithms import Batch, StepContext, get_algorithm
from aerossl.engine.pseudo_stats import pseudo_label_log


def image(v: float) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), v)


def make_fixmatch(model: nn.Module, **params):
    cls = get_algorithm("fixmatch")
    return cls(model, cls.Params(**params), num_classes=3)


def test_fixmatch_masks_low_confidence_and_trains_strong_views_on_weak_pseudo_labels() -> None:
    table = {
        0.1: [2.0, 0.0, 0.0],  # labelled, class 0
        0.2: [8.0, 0.0, 0.0],  # unlabelled A weak: confident class 0
        0.3: [0.0, 0.5, 0.0],  # unlabelled B weak: unsure
        0.4: [0.0, 1.0, 0.0],  # A strong
        0.5: [0.0, 0.0, 3.0],  # B strong
    }
    algo = make_fixmatch(FixedLogits(table), threshold=0.95)
    batch = Batch(labeled={"weak": image(0.1)}, labels=torch.tensor([0]),
                  unlabeled={"weak": torch.cat([image(0.2), image(0.3)]),
                             "strong": torch.cat([image(0.4), image(0.5)])})
    out = algo.training_step(batch, StepContext(0, 10))

    def ce(logits: list[float], target: int) -> float:
        return -logits[target] + math.log(sum(math.exp(v) for v in logits))

    sup = ce(table[0.1], 0)
    # A: confidence e^8/(e^8+2) = 0.9993 >= 0.95 -> pseudo-label 0; B: 0.45 < 0.95 -> masked
    unsup = (ce(table[0.4], 0) + 0.0) / 2
    logged = pseudo_label_log(out, torch.tensor([0, 2]))  # the engine's scores of the step
    assert logged["mask_rate"].item() == 0.5
    assert logged["pseudo_acc"].item() == 1.0
    assert math.isclose(out.log["loss/sup"].item(), sup, rel_tol=1e-5)
    assert math.isclose(out.log["loss/unsup"].item(), unsup, rel_tol=1e-5)
    assert math.isclose(out.loss.item(), sup + unsup, rel_tol=1e-5)


def test_fixmatch_joint_batch_gives_the_same_loss_for_a_stateless_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, u_w, u_s = torch.randn(4, 3, 2, 2), torch.randn(8, 3, 2, 2), torch.randn(8, 3, 2, 2)
    batch = Batch({"weak": x}, torch.tensor([0, 1, 2, 0]), {"weak": u_w, "strong": u_s})
    split = make_fixmatch(model, threshold=0.4).training_step(batch, StepContext(0, 1))
    joint = make_fixmatch(model, threshold=0.4, joint_batch=True).training_step(
        batch, StepContext(0, 1))
    assert torch.allclose(split.loss, joint.loss)
    assert split.mask.mean() > 0


def test_fixmatch_temperature_sharpens_the_confidence() -> None:
    model = FixedLogits({0.1: [1.0, 0.0, 0.0], 0.2: [1.0, 0.0, 0.0], 0.3: [1.0, 0.0, 0.0]})
    batch = Batch({"weak": image(0.1)}, torch.tensor([0]),
                  {"weak": image(0.2), "strong": image(0.3)})
    cold = make_fixmatch(model, threshold=0.9, temperature=0.2).training_step(batch,
                                                                               StepContext(0, 1))
    warm = make_fixmatch(model, threshold=0.9, temperature=1.0).training_step(batch,
                                                                               StepContext(0, 1))
    assert cold.mask.mean().item() == 1.0 and warm.mask.mean().item() == 0.0


def test_supervised_loss_is_cross_entropy_of_the_labelled_batch() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    cls = get_algorithm("supervised")
    algo = cls(model, cls.Params(), 3)
    x, y = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 1, 0])
    out = algo.training_step(Batch({"weak": x}, y), StepContext(0, 1))
    assert torch.allclose(out.loss, nn.functional.cross_entropy(model(x), y))
    assert cls.views(cls.Params()).unlabeled == {}
