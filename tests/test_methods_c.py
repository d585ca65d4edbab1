"""SoftMatch, AdaMatch and DeFixMatch: their losses, weights and thresholds against hand
computations on prescribed logits."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FixedLogits
from test_methods_b import ce, image, make, softmax

from aerossl.algorithms import Batch, StepContext


def _batch(lab: tuple[float, ...], weak: tuple[float, ...], strong: tuple[float, ...],
           labels: list[int], lab_strong: tuple[float, ...] | None = None) -> Batch:
    labeled = {"weak": image(*lab)}
    if lab_strong is not None:
        labeled["strong"] = image(*lab_strong)
    return Batch(labeled=labeled, labels=torch.tensor(labels),
                 unlabeled={"weak": image(*weak), "strong": image(*strong)})


def test_softmatch_weights_follow_a_truncated_gaussian_by_hand() -> None:
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [3.0, 0.0, 0.0], 0.3: [0.2, 0.0, 0.0],
             0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 1.0]}
    algo = make("softmatch", FixedLogits(table), ema_momentum=0.5, dist_align=False)
    out = algo.training_step(_batch((0.1,), (0.2, 0.3), (0.4, 0.5), [0]), StepContext(0, 10))
    ca, cb = max(softmax(table[0.2])), max(softmax(table[0.3]))
    mu = 0.5 / 3 + 0.5 * (ca + cb) / 2
    var = 0.5 * 1.0 + 0.5 * ((ca - cb) ** 2 / 2)  # unbiased variance of two values
    weights = [1.0 if c >= mu else math.exp(-((c - mu) ** 2) / (2 * var / 4)) for c in (ca, cb)]
    assert weights[0] == 1.0 and 0 < weights[1] < 1  # a kept, b down-weighted, not dropped
    assert out.mask.tolist() == pytest.approx(weights, rel=1e-5)
    expected = (weights[0] * ce(table[0.4], 0) + weights[1] * ce(table[0.5], 0)) / 2
    assert out.log["loss/unsup"].item() == pytest.approx(expected, rel=1e-5)
    assert algo.thresholds.mu.item() == pytest.approx(mu, rel=1e-6)
    assert algo.thresholds.var.item() == pytest.approx(var, rel=1e-6)
    algo.eval()
    algo.thresholds(torch.tensor([[0.9, 0.05, 0.05]]))
    assert algo.thresholds.mu.item() == pytest.approx(mu, rel=1e-6)  # no update outside training


def test_softmatch_aligns_guesses_uniformly_by_default() -> None:
    algo = make("softmatch", FixedLogits({}))
    assert type(algo.aligner).__name__ == "DistributionAlignment"
    assert algo.aligner.target == "uniform"


def test_adamatch_threshold_is_relative_to_the_labelled_confidence() -> None:
    table = {0.1: [2.0, 0.0, 0.0], 0.15: [0.0, 3.0, 0.0], 0.2: [2.5, 0.0, 0.0],
             0.3: [1.0, 0.0, 0.0], 0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 1.0]}
    algo = make("adamatch", FixedLogits(table), threshold=0.9, dist_align=False)
    out = algo.training_step(_batch((0.1, 0.15), (0.2, 0.3), (0.4, 0.5), [0, 1]),
                             StepContext(0, 10))
    lab_conf = (max(softmax(table[0.1])) + max(softmax(table[0.15]))) / 2
    tau = 0.9 * lab_conf
    ca, cb = max(softmax(table[0.2])), max(softmax(table[0.3]))
    assert ca >= tau > cb and ca < 0.9  # a passes only because the threshold is relative
    assert out.mask.tolist() == [1.0, 0.0]
    assert out.log["threshold/relative"] == pytest.approx(tau, rel=1e-6)
    assert out.log["loss/unsup"].item() == pytest.approx(ce(table[0.4], 0) / 2, rel=1e-5)


def test_adamatch_aligns_to_the_labelled_class_distribution() -> None:
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [0.0, 2.0, 0.0], 0.4: [0.0, 1.0, 0.0]}
    algo = make("adamatch", FixedLogits(table), dist_align_momentum=0.5)
    out = algo.training_step(_batch((0.1,), (0.2,), (0.4,), [0]), StepContext(0, 10))
    p_lab, p_u = softmax(table[0.1]), softmax(table[0.2])
    target = [0.5 / 3 + 0.5 * v for v in p_lab]
    model = [0.5 / 3 + 0.5 * v for v in p_u]
    aligned = [p * t / m for p, t, m in zip(p_u, target, model, strict=True)]
    aligned = [v / sum(aligned) for v in aligned]
    assert algo.aligner.target_mean.tolist() == pytest.approx(target, rel=1e-6)
    assert algo.aligner.model_mean.tolist() == pytest.approx(model, rel=1e-6)
    assert out.pseudo_labels.tolist() == [max(range(3), key=aligned.__getitem__)]
    assert "aligner.target_mean" in algo.state_dict()  # checkpointed with the method


def test_defixmatch_subtracts_its_pseudo_label_loss_on_the_labelled_images() -> None:
    table = {0.1: [4.0, 0.0, 0.0], 0.15: [0.0, 0.5, 0.0], 0.2: [5.0, 0.0, 0.0],
             0.3: [0.0, 0.0, 0.1], 0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 1.0],
             0.6: [1.0, 2.0, 0.0], 0.7: [0.0, 0.0, 2.0]}
    algo = make("defixmatch", FixedLogits(table), threshold=0.9, lambda_u=0.5)
    batch = _batch((0.1, 0.15), (0.2, 0.3), (0.4, 0.5), [0, 1], lab_strong=(0.6, 0.7))
    out = algo.training_step(batch, StepContext(0, 10))
    sup = (ce(table[0.1], 0) + ce(table[0.15], 1)) / 2
    unsup = ce(table[0.4], 0) / 2  # unlabelled: only a (0.2) is confident
    bias = ce(table[0.6], 0) / 2  # labelled as if unlabelled: only 0.1 is confident
    assert out.mask.tolist() == [1.0, 0.0]
    assert out.log["loss/unsup"].item() == pytest.approx(unsup, rel=1e-5)
    assert out.log["loss/debias"].item() == pytest.approx(bias, rel=1e-5)
    assert out.loss.item() == pytest.approx(sup + 0.5 * (unsup - bias), rel=1e-5)
    assert algo.views(algo.p).labeled == {"weak": "weak", "strong": "strong"}


def test_simmatch_label_propagation_by_hand() -> None:
    from aerossl.algorithms.simmatch import propagate

    probs = torch.tensor([[0.7, 0.2, 0.1]])
    sim = torch.tensor([[0.5, 0.3, 0.2]])  # similarities to three bank items
    labels = torch.tensor([0, 1, 1])
    unfolded, target = propagate(probs, sim, labels, alpha=0.9)
    raw = [0.5 * 0.7, 0.3 * 0.2, 0.2 * 0.2]
    assert unfolded[0].tolist() == pytest.approx([v / sum(raw) for v in raw], rel=1e-6)
    agg = [0.5, 0.5, 0.0]  # class sums of the similarities
    assert target[0].tolist() == pytest.approx([0.9 * p + 0.1 * a for p, a in
                                                zip([0.7, 0.2, 0.1], agg, strict=True)])


def test_simmatch_bank_is_a_labelled_queue_and_the_step_is_finite() -> None:
    from aerossl.algorithms.simmatch import LabeledBank
    from aerossl.models import create_model

    bank = LabeledBank(3, 2)
    bank.push(torch.eye(2), torch.tensor([0, 1]))
    bank.push(torch.tensor([[1.0, 1.0], [2.0, 2.0]]), torch.tensor([2, 1]))
    z, y = bank.contents()
    assert y.tolist() == [1, 1, 2] and z[0].tolist() == [2.0, 2.0]  # oldest overwritten
    assert int(bank.filled) == 3 and int(bank.position) == 1
    model = create_model("cnn", 3, widths=[4, 8])
    algo = make("simmatch", model, threshold=0.0, bank_size=8)
    batch = Batch(labeled={"weak": torch.rand(4, 3, 8, 8)}, labels=torch.tensor([0, 1, 2, 0]),
                  unlabeled={"weak": torch.rand(6, 3, 8, 8), "strong": torch.rand(6, 3, 8, 8)})
    out = algo.training_step(batch, StepContext(0, 10))
    assert torch.isfinite(out.loss) and out.mask.tolist() == [1.0] * 6
    out.loss.backward()
    assert algo.projection[0].weight.grad is not None  # the similarity loss trains the head
    assert {"labeled_bank.embeddings", "labeled_bank.labels"} <= set(algo.state_dict())
