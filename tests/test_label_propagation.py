"""Label propagation (Iscen et al. 2019): the graph and its solve, the loss, the engine's
periodic refresh, exact resume and learning on real images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_metrics, small_config, stopped_and_resumed_state

import aerossl
from aerossl.algorithms import Batch, StepContext, get_algorithm
from aerossl.algorithms.graph import knn_graph, propagate, propagated_labels
from aerossl.validate import config_from_dict, load_config


def test_conjugate_gradient_solves_the_propagation_system() -> None:
    features = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    graph = knn_graph(features, k=5)
    dense = graph.to_dense()
    assert torch.allclose(dense, dense.T)  # symmetric
    assert bool((dense.diagonal() == 0).all())  # no self-loops
    seeds = torch.zeros(60, 3, dtype=torch.float64)
    seeds[[0, 1, 2], [0, 1, 2]] = 1
    z = propagate(graph, seeds, alpha=0.9, tol=1e-10)
    exact = torch.linalg.solve(torch.eye(60, dtype=torch.float64) - 0.9 * dense, seeds)
    assert torch.allclose(z, exact, atol=1e-8)


def _chain() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class 0 on a long arc of a circle (40 images), class 1 on a short one past a gap (20),
    each labelled at its far end; so the class-0 images by the gap are nearer to class 1's
    label than to their own, while their chain of neighbours leads to their own. Three more
    images off the circle form a group no label reaches."""
    angles = torch.cat([torch.linspace(0.0, 2.0, 40), torch.linspace(2.2, 2.6, 20)])
    circle = torch.stack([torch.cos(angles), torch.sin(angles), torch.zeros(60)], dim=1)
    apart = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.05, 1.0], [0.05, 0.0, 1.0]])
    labeled = torch.tensor([0, 59])  # angles 0.0 (class 0) and 2.6 (class 1)
    return torch.cat([circle, apart]), labeled, torch.tensor([0, 1])


def test_labels_follow_the_chain_of_neighbours_not_the_nearest_label() -> None:
    features, labeled, labels = _chain()
    truth = torch.cat([torch.zeros(40), torch.ones(20)]).long()
    nearest = (features[:60] @ features[labeled].T).argmax(1)  # nearest labelled image's class
    assert float((nearest == truth).float().mean()) < 0.9  # the geometry is a trap for it
    pred, certainty = propagated_labels(features, labeled, labels, 2, k=2, alpha=0.99)
    assert torch.equal(pred[:60], truth)
    assert bool((certainty[labeled] == 1).all()) and bool((certainty[:60] > 0.5).all())
    assert bool((certainty[60:] == 0).all())  # no label reaches them: no weight


def _algorithm(num_images: int = 6, balance: bool = False):
    cls = get_algorithm("label_propagation")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    return cls(model, cls.Params(balance=balance, lambda_u=0.5), 3, num_images=num_images)


def test_loss_is_the_certainty_weighted_cross_entropy_of_the_propagated_labels() -> None:
    algo = _algorithm()
    algo.propagated[:] = torch.tensor([0, 1, 2, 2, 1, 0])
    algo.weights[:] = torch.tensor([1.0, 0.5, 0.25, 0.0, 1.0, 1.0])
    g = torch.Generator().manual_seed(1)
    x, u = torch.randn(2, 4, 1, 1, generator=g), torch.randn(3, 4, 1, 1, generator=g)
    index = torch.tensor([1, 2, 3])
    batch = Batch({"weak": x}, torch.tensor([0, 2]), {"strong": u}, unlabeled_index=index)
    out = algo.training_step(batch, StepContext(0, 10))
    with torch.no_grad():
        lx, lu = algo.model(x), algo.model(u)
    sup = -(torch.log_softmax(lx, 1)[[0, 1], [0, 2]]).mean()
    logp = torch.log_softmax(lu, 1)
    unsup = -(0.5 * logp[0, 1] + 0.25 * logp[1, 2] + 0.0 * logp[2, 2]) / 3
    assert torch.allclose(out.loss, sup + 0.5 * unsup, atol=1e-6)
    assert torch.equal(out.pseudo_labels, torch.tensor([1, 2, 2]))
    assert torch.equal(out.mask, torch.tensor([1.0, 1.0, 0.0]))


def test_class_balance_weighs_rare_propagated_classes_up() -> None:
    from aerossl.algorithms.base import RunData

    algo = _algorithm(num_images=8, balance=True)
    # class 0 owns the first six images, class 1 the last two: one label each
    features = torch.tensor([[1.0, 0, 0, 0]] * 6 + [[0, 1.0, 0, 0]] * 2)
    features += 0.01 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, -1, -1, -1, -1, -1, 1, -1])

    def predict(module: torch.nn.Module, idx: np.ndarray) -> torch.Tensor:
        return module(features[torch.as_tensor(idx)].reshape(len(idx), 4, 1, 1))

    algo.model.forward_features = lambda x: x.flatten(1)
    data = RunData(features, labels, np.array([0, 6]), np.arange(8), np.array([], int), predict)
    algo.refresh(data)
    assert torch.equal(algo.propagated, torch.tensor([0] * 6 + [1] * 2))
    # zeta = n / (C n_c) with C = 3: 8 / 18 for class 0, 8 / 6 for class 1 (the labelled
    # rows' certainty is 1)
    assert math.isclose(float(algo.weights[0]), 8 / 18, rel_tol=1e-6)
    assert math.isclose(float(algo.weights[6]), 8 / 6, rel_tol=1e-6)


def test_consistency_adds_fixmatchs_thresholded_weak_to_strong_loss() -> None:
    cls = get_algorithm("label_propagation")
    assert "weak" not in cls.views(cls.Params()).unlabeled  # off: no weak view is forwarded
    params = cls.Params(balance=False, lambda_u=0.5, consistency=2.0, threshold=0.9)
    assert "weak" in cls.views(params).unlabeled
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():  # logits = the first three inputs
        model[1].weight.copy_(torch.eye(3, 4))
        model[1].bias.zero_()
    algo = cls(model, params, 3, num_images=6)
    algo.propagated[:] = torch.tensor([0, 1, 2, 2, 1, 0])
    algo.weights[:] = torch.tensor([1.0, 0.5, 0.25, 0.0, 1.0, 1.0])
    g = torch.Generator().manual_seed(2)
    x, u, w = (torch.randn(n, 4, 1, 1, generator=g) for n in (2, 3, 3))
    w[1:] = 0.0  # two weak views uniform
    w[0, 0] = 20.0  # one confidently class 0: it alone passes the 0.9 threshold
    index = torch.tensor([1, 2, 3])
    batch = Batch({"weak": x}, torch.tensor([0, 2]), {"strong": u, "weak": w},
                  unlabeled_index=index)
    out = algo.training_step(batch, StepContext(0, 10))
    with torch.no_grad():
        lx, lu, lw = algo.model(x), algo.model(u), algo.model(w)
    probs = lw.softmax(1)
    assert float(probs[0].max()) >= 0.9 and bool((probs[1:].max(1).values < 0.9).all())
    sup = -(torch.log_softmax(lx, 1)[[0, 1], [0, 2]]).mean()
    logp = torch.log_softmax(lu, 1)
    unsup = -(0.5 * logp[0, 1] + 0.25 * logp[1, 2]) / 3
    consistency = -logp[0, int(probs[0].argmax())] / 3
    assert torch.allclose(out.loss, sup + 0.5 * unsup + 2.0 * consistency, atol=1e-6)
    assert math.isclose(float(out.log["consistency/mask"]), 1 / 3, rel_tol=1e-6)


def test_graph_from_the_evaluated_weights_when_asked() -> None:
    from aerossl.algorithms.base import RunData

    cls = get_algorithm("label_propagation")
    # the trained weights see two groups {0..3} and {4..7}; the evaluated weights see them
    # swapped halves {0, 1, 4, 5} and {2, 3, 6, 7}: image 0 and image 6 are labelled
    features = torch.tensor([[1.0, 0]] * 4 + [[0, 1.0]] * 4)
    swapped = torch.tensor([[1.0, 0]] * 2 + [[0, 1.0]] * 2 + [[1.0, 0]] * 2 + [[0, 1.0]] * 2)
    features += 0.01 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    swapped += 0.01 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, -1, -1, -1, -1, -1, 1, -1])

    class Lookup(torch.nn.Module):
        def __init__(self, table: torch.Tensor) -> None:
            super().__init__()
            self.table = table

        def forward_features(self, idx: torch.Tensor) -> torch.Tensor:
            return self.table[idx.long()]

    def predict(module: torch.nn.Module, idx: np.ndarray) -> torch.Tensor:
        return module(torch.as_tensor(idx))

    expected = {"trained": [0] * 4 + [1] * 4, "evaluated": [0, 0, 1, 1, 0, 0, 1, 1]}
    for which, want in expected.items():
        algo = cls(Lookup(features), cls.Params(graph_weights=which, k=3), 2, num_images=8)
        data = RunData(features, labels, np.array([0, 6]), np.arange(8), np.array([], int),
                       predict, evaluated=Lookup(swapped))
        algo.refresh(data)
        assert algo.propagated.tolist() == want, which


def test_engine_refreshes_every_interval_from_step_zero(five_classes: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cls = get_algorithm("label_propagation")
    calls: list[int] = []
    original = cls.refresh

    def counting(self, data):
        calls.append(len(data.unlabeled))
        return original(self, data)

    monkeypatch.setattr(cls, "refresh", counting)
    cfg = small_config(five_classes, tmp_path, "label_propagation", train__steps=12,
                       algorithm__refresh_every=5)
    result = aerossl.train(cfg)
    assert len(calls) == 3  # before steps 0, 5 and 10
    tests = [m for m in read_metrics(result.run_dir) if m["split"] == "test"]
    assert all(0 <= m["pseudo_label_acc"] <= 1 for m in tests)
    trains = [m for m in read_metrics(result.run_dir) if m["split"] == "train"]
    assert any("time/refresh" in m for m in trains)


def test_a_refresh_on_a_skipped_step_is_still_timed(five_classes: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cls = get_algorithm("label_propagation")
    original = cls.training_step

    def nan_at_three(self, batch, ctx):
        out = original(self, batch, ctx)
        if ctx.step == 3:  # the step after the second refresh: its loss is NaN, skipped
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(cls, "training_step", nan_at_three)
    cfg = small_config(five_classes, tmp_path, "label_propagation", algorithm__refresh_every=3,
                       train__on_nonfinite="skip")
    rows = [m for m in read_metrics(aerossl.train(cfg).run_dir) if m["split"] == "train"]
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 1]
    assert all("time/refresh" in r for r in rows)  # steps 0, 3 (skipped), 6 and 9 refresh


def test_resume_is_exact_with_the_propagated_labels(five_classes: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(small_config(five_classes, tmp_path, "label_propagation",
                                        algorithm__refresh_every=5))
    state = stopped_and_resumed_state(cfg, tmp_path)  # stopped after step 7, between refreshes
    assert int((state["propagated"] >= 0).sum()) > 0
    assert float(state["weights"].sum()) > 0


# chance is 0.2 (five classes, 4 labels each)
@pytest.mark.slow  # multi-step training (CI runs it: pytest -m slow)
def test_label_propagation_learns_on_real_images(five_classes: Path, tmp_path: Path) -> None:
    cfg = small_config(five_classes, tmp_path, "label_propagation", train__steps=150,
                       train__eval_every=150, train__log_every=10,
                       algorithm__refresh_every=25)
    result = aerossl.train(cfg)
    rows = [m for m in read_metrics(result.run_dir) if m["split"] == "train"]
    assert all(math.isfinite(r["loss/unsup"]) for r in rows)
    assert rows[-1]["loss/sup"] < rows[0]["loss/sup"]
    assert result.final_acc >= 0.4, result


def test_shipped_pretrained_config_validates() -> None:
    cfg = load_config(aerossl.find_config("ucmerced_pretrained_label_propagation"))
    assert cfg.algorithm.name == "label_propagation"
    assert getattr(cfg.algorithm, "consistency", 0) == 0
    both = load_config(aerossl.find_config("ucmerced_pretrained_label_propagation_consistency"))
    assert both.algorithm.consistency == 1.0
    # the same recipe but the consistency term: the two compare on the same labels
    assert both.to_dict()["train"] == cfg.to_dict()["train"]
    assert both.to_dict()["data"] == cfg.to_dict()["data"]
