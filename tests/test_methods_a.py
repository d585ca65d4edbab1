"""Part-A SSL methods and the shared options, against hand computations on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FixedLogits
from torch import nn

from aerossl.algorithms import (
    Batch,
    StepContext,
    get_algorithm,
    sigmoid_rampup,
)
from aerossl.algorithms.mixing import mix_batch
from aerossl.algorithms.targets import sharpen
from aerossl.algorithms.uda import tsa_threshold
from aerossl.algorithms.utils import frozen_bn_stats, ramped_weight
from aerossl.algorithms.vat import adversarial_direction, l2_normalize
from aerossl.engine.pseudo_stats import pseudo_label_log


def image(*values: float) -> torch.Tensor:
    return torch.cat([torch.full((1, 1, 2, 2), v) for v in values])


def make(name: str, model: nn.Module, num_classes: int = 3, **params):
    cls = get_algorithm(name)
    return cls(model, cls.Params(**params), num_classes=num_classes)


def softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def ce(row: list[float], target: int) -> float:
    return -math.log(softmax(row)[target])


def entropy(row: list[float]) -> float:
    return -sum(p * math.log(p) for p in softmax(row))


# ----------------------------------------------------------------- shared options (base.py)

def test_sigmoid_rampup_and_the_ramped_weight() -> None:
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(3, 0) == 1.0
    params = get_algorithm("pi_model").Params(lambda_u=10.0, rampup_fraction=0.4)
    assert ramped_weight(params, StepContext(20, 100)) == pytest.approx(10 * math.exp(-1.25))
    assert ramped_weight(params, StepContext(40, 100)) == 10.0


def test_mixup_targets_sum_to_one_and_weight_the_mixed_images() -> None:
    torch.manual_seed(0)
    n = 6
    x = torch.arange(1.0, n + 1).view(n, 1, 1, 1).expand(n, 2, 4, 4).clone()
    mixed, targets = mix_batch(x, torch.eye(n), "mixup", 1.0)
    assert torch.allclose(targets.sum(1), torch.ones(n))
    # each mixed image is the target-weighted combination of the originals (x[i] = i + 1)
    assert torch.allclose(mixed[:, 0, 0, 0], targets @ torch.arange(1.0, n + 1))
    # one coefficient lam for the whole batch: every image not paired with itself keeps lam
    diag = targets.diagonal()
    kept = diag[diag < 1]
    assert len(kept) > 0 and torch.allclose(kept, kept[0].expand_as(kept))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cutmix_targets_are_the_pasted_areas(seed: int) -> None:
    torch.manual_seed(seed)
    n, size = 5, 8
    x = torch.arange(1.0, n + 1).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    mixed, targets = mix_batch(x, torch.eye(n), "cutmix", 1.0)
    assert torch.allclose(targets.sum(1), torch.ones(n))
    for i in range(n):
        for j in range(n):
            area = (mixed[i, 0] == j + 1).float().mean()
            assert area.item() == pytest.approx(targets[i, j].item(), abs=1e-6)


def test_distribution_alignment_by_hand() -> None:
    algo = make("pseudo_label", FixedLogits({}), dist_align=True, dist_align_momentum=0.5)
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    aligned = algo.align(probs)
    mean = [(0.6 + 0.2) / 2, (0.3 + 0.2) / 2, (0.1 + 0.6) / 2]
    running = [0.5 / 3 + 0.5 * m for m in mean]
    assert algo.aligner.model_mean.tolist() == pytest.approx(running)
    for row, out in zip(probs.tolist(), aligned.tolist(), strict=True):
        raw = [p / r for p, r in zip(row, running, strict=True)]
        assert out == pytest.approx([v / sum(raw) for v in raw], rel=1e-6)
    algo.eval()
    algo.align(probs)
    assert algo.aligner.model_mean.tolist() == pytest.approx(running)  # no update outside training



def test_options_are_components_chosen_by_the_parameters() -> None:
    on = make("pseudo_label", FixedLogits({}), dist_align=True, entropy_weight=0.3,
              labeled_mix="cutmix")
    off = make("pseudo_label", FixedLogits({}))
    assert type(on.aligner).__name__ == "DistributionAlignment"
    assert type(off.aligner).__name__ == "NoAlignment"
    assert (on.mixer.mode, off.mixer.mode) == ("cutmix", "none")
    assert (on.entropy_min.weight, off.entropy_min.weight) == (0.3, 0.0)
    assert "aligner.model_mean" in on.state_dict() and "aligner.model_mean" not in off.state_dict()
    # a checkpoint written before the options were components still loads
    state = dict(on.state_dict())
    state["da_model_mean"] = torch.tensor([0.2, 0.3, 0.5])
    del state["aligner.model_mean"]
    on.load_state_dict(state)
    assert on.aligner.model_mean.tolist() == pytest.approx([0.2, 0.3, 0.5])

def test_entropy_loss_by_hand() -> None:
    algo = make("vat", FixedLogits({}), entropy_weight=0.5)
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    # uniform: ln 3; [1/2, 1/4, 1/4]: 1.5 ln 2
    expected = 0.5 * (math.log(3) + 1.5 * math.log(2)) / 2
    assert algo.entropy_loss(logits).item() == pytest.approx(expected, rel=1e-6)
    assert make("vat", FixedLogits({})).entropy_loss(logits).item() == 0.0


def test_frozen_bn_stats_normalises_by_the_batch_but_keeps_running_stats() -> None:
    bn = nn.BatchNorm1d(2).train()
    x = torch.tensor([[1.0, 5.0], [3.0, 9.0]])
    with frozen_bn_stats(bn):
        y = bn(x)
    assert torch.allclose(y.mean(0), torch.zeros(2), atol=1e-6)
    assert bn.running_mean.tolist() == [0.0, 0.0] and int(bn.num_batches_tracked) == 0
    assert bn.track_running_stats
    bn(x)
    assert bn.running_mean.tolist() == pytest.approx([0.2, 0.7])


# ----------------------------------------------------------------- Pseudo-Label

def test_pseudo_label_masks_unsure_predictions_and_ramps_the_weight() -> None:
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [4.0, 0.0, 0.0], 0.3: [0.0, 0.5, 0.0]}
    algo = make("pseudo_label", FixedLogits(table), threshold=0.95, lambda_u=2.0,
                rampup_fraction=0.4, entropy_weight=0.1)
    batch = Batch({"weak": image(0.1)}, torch.tensor([0]), {"weak": image(0.2, 0.3)})
    out = algo.training_step(batch, StepContext(10, 100))
    weight = 2.0 * math.exp(-5 * (1 - 10 / 40) ** 2)
    # 0.2: confidence e^4/(e^4+2) = 0.965 -> label 0 on the same view; 0.3: 0.45 -> masked
    unsup = ce(table[0.2], 0) / 2
    ent = 0.1 * (entropy(table[0.2]) + entropy(table[0.3])) / 2
    assert out.log["lambda_u"] == pytest.approx(weight)
    logged = pseudo_label_log(out, torch.tensor([0, 2]))  # the engine's scores of the step
    assert logged["mask_rate"].item() == 0.5 and logged["pseudo_acc"].item() == 1.0
    assert out.log["loss/unsup"].item() == pytest.approx(unsup, rel=1e-5)
    assert out.loss.item() == pytest.approx(ce(table[0.1], 0) + weight * unsup + ent, rel=1e-5)
    assert get_algorithm("pseudo_label").views(algo.p).unlabeled == {"weak": "weak"}


# ----------------------------------------------------------------- Pi-model

def test_pi_model_is_the_mse_of_two_views_softmax_outputs() -> None:
    table = {0.1: [1.0, 0.0, 0.0], 0.2: [2.0, 0.0, 1.0], 0.3: [0.0, 1.0, 0.0],
             0.4: [0.0, 0.0, 0.0], 0.5: [0.5, 0.5, 3.0]}
    algo = make("pi_model", FixedLogits(table), lambda_u=10.0, rampup_fraction=0.0)
    batch = Batch({"weak": image(0.1)}, torch.tensor([2]),
                  {"weak": image(0.2, 0.3), "weak2": image(0.4, 0.5)})
    out = algo.training_step(batch, StepContext(0, 100))
    pairs = [(softmax(table[0.2]), softmax(table[0.4])), (softmax(table[0.3]), softmax(table[0.5]))]
    mse = sum((a - b) ** 2 for p, q in pairs for a, b in zip(p, q, strict=True)) / 6
    assert out.log["loss/unsup"].item() == pytest.approx(mse, rel=1e-5)
    assert out.loss.item() == pytest.approx(ce(table[0.1], 2) + 10.0 * mse, rel=1e-5)
    views = get_algorithm("pi_model").views(algo.p).unlabeled
    assert views == {"weak": "weak", "weak2": "weak"}


def test_pi_model_detach_target_stops_the_gradient_of_the_second_view() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, u1 = torch.zeros(1, 1, 2, 2), torch.randn(2, 1, 2, 2)
    grads = {}
    for detach in (True, False):
        algo = make("pi_model", model, rampup_fraction=0.0, detach_target=detach)
        # the second view's gradient is added only when its prediction is not detached
        batch = Batch({"weak": x}, torch.tensor([0]), {"weak": u1, "weak2": u1 + 0.5})
        model.zero_grad()
        algo.training_step(batch, StepContext(0, 1)).loss.backward()
        grads[detach] = model[1].weight.grad.clone()
    assert not torch.allclose(grads[True], grads[False])


# ----------------------------------------------------------------- Mean Teacher

def test_mean_teacher_ema_update_by_hand_and_teacher_is_not_trainable() -> None:
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    algo = make("mean_teacher", model, num_classes=1, ema_decay=0.6)
    assert all(not p.requires_grad for p in algo.teacher.parameters())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    algo.on_step_end(StepContext(0, 10))  # update 0: decay min(0, 0.6) = 0 -> copy
    assert algo.teacher[0].weight.tolist() == [[1.0, 1.0]]
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].running_mean.fill_(7.0)
    algo.on_step_end(StepContext(1, 10))  # update 1: decay min(1/2, 0.6) = 0.5
    assert algo.teacher[0].weight[0].tolist() == pytest.approx([2.0, 2.0])
    assert algo.teacher[1].running_mean.tolist() == [7.0]  # BN statistics in sync
    with torch.no_grad():
        model[0].weight.fill_(5.0)
    algo.on_step_end(StepContext(2, 10))  # update 2: decay min(2/3, 0.6) = 0.6
    assert algo.teacher[0].weight[0].tolist() == pytest.approx([0.6 * 2.0 + 0.4 * 5.0] * 2)
    assert int(algo.teacher_updates) == 3 and "teacher_updates" in algo.state_dict()
    assert algo.eval_model() is model


def test_mean_teacher_consistency_targets_come_from_the_teacher() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    algo = make("mean_teacher", model, lambda_u=50.0, rampup_fraction=0.0)
    with torch.no_grad():
        algo.teacher[1].weight.mul_(-1.0)  # a teacher that differs from the student
    x, u1, u2 = torch.randn(2, 1, 2, 2), torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    out = algo.training_step(Batch({"weak": x}, torch.tensor([0, 1]), {"weak": u1, "weak2": u2}),
                             StepContext(5, 10))
    student, teacher = torch.softmax(model(u1), 1), torch.softmax(algo.teacher(u2), 1)
    mse = ((student - teacher) ** 2).mean()
    assert out.log["loss/unsup"].item() == pytest.approx(mse.item(), rel=1e-5)
    sup = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    assert out.loss.item() == pytest.approx((sup + 50.0 * mse).item(), rel=1e-5)
    out.loss.backward()
    assert algo.teacher[1].weight.grad is None


# ----------------------------------------------------------------- VAT

def test_vat_step_perturbs_each_image_by_eps_along_the_adversarial_direction() -> None:
    """The loss of a VAT step is KL(p(u) || p(u + eps * d)) for the direction the power
    iteration finds from the same noise: the perturbation has L2 norm eps per image."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    u = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    algo = make("vat", model, eps=6.0, xi=1e-6, vat_iterations=1, lambda_u=1.0)
    losses = {}
    for eps in (6.0, 0.5):
        algo.p.eps = eps
        torch.manual_seed(7)
        out = algo.training_step(Batch({"weak": x}, torch.tensor([0, 1]), {"weak": u}),
                                 StepContext(10, 10))
        torch.manual_seed(7)
        d0 = torch.randn_like(u)  # the step's first draw: its power-iteration start
        probs = torch.softmax(model(u), 1).detach()
        direction = adversarial_direction(model, u, probs, xi=1e-6, iterations=1, d=d0)
        r_adv = eps * direction
        assert r_adv.flatten(1).norm(dim=1).tolist() == pytest.approx([eps] * 3)
        logq = torch.log_softmax(model(u + r_adv), 1)
        kl = (probs * (probs.log() - logq)).sum(1).mean()
        assert out.log["loss/unsup"].item() == pytest.approx(kl.item(), rel=1e-6)
        losses[eps] = out.log["loss/unsup"].item()
    assert losses[6.0] > losses[0.5] > 0  # a larger perturbation changes the prediction more


def test_vat_perturbation_has_norm_eps_along_the_power_iteration_direction() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    u = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    d0 = torch.randn_like(u)
    probs = torch.softmax(model(u), 1).detach()
    direction = adversarial_direction(model, u, probs, xi=1e-6, iterations=1, d=d0)
    assert direction.flatten(1).norm(dim=1).tolist() == pytest.approx([1.0, 1.0])  # unit
    w = model[1].weight.detach()
    for i in range(2):
        # curvature of KL(p || softmax(W(u + r))) at r = 0: W^T (diag p - p p^T) W
        p = probs[i]
        hessian = w.T @ (torch.diag(p) - torch.outer(p, p)) @ w
        start = d0[i].flatten() / d0[i].norm()
        expected = hessian @ start
        expected = expected / expected.norm()
        assert torch.allclose(direction[i].flatten(), expected, atol=1e-4)
    assert torch.allclose(l2_normalize(d0).flatten(1).norm(dim=1), torch.ones(2, dtype=u.dtype))


def test_vat_loss_is_the_kl_to_the_perturbed_prediction_and_bn_stats_see_clean_data() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    reference = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    reference.load_state_dict(model.state_dict())
    algo = make("vat", model, eps=2.0, lambda_u=0.3, rampup_fraction=0.0).train()
    x, u = torch.randn(2, 1, 2, 2), torch.randn(4, 1, 2, 2)
    torch.manual_seed(1)
    out = algo.training_step(Batch({"weak": x}, torch.tensor([0, 1]), {"weak": u}),
                             StepContext(0, 1))
    reference(torch.cat([x, u]))  # one clean forward: the only one BN may learn from
    assert torch.equal(model[2].running_mean, reference[2].running_mean)
    assert int(model[2].num_batches_tracked) == 1
    # recompute the perturbation from the same noise and the loss by hand
    torch.manual_seed(1)
    with frozen_bn_stats(reference):
        p = torch.softmax(reference(torch.cat([x, u]))[2:], 1).detach()
        r = 2.0 * adversarial_direction(reference, u, p, 1e-6, 1)
        q = torch.softmax(reference(u + r), 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    assert out.log["loss/unsup"].item() == pytest.approx(kl.item(), rel=1e-4)
    assert out.log["loss/unsup"].item() > 0


# ----------------------------------------------------------------- UDA

def test_uda_sharpens_masks_and_trains_the_strong_view_on_soft_targets() -> None:
    table = {0.1: [1.0, 0.0, 0.0], 0.2: [3.0, 0.0, 0.0], 0.3: [0.5, 0.0, 0.0],
             0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 2.0]}
    algo = make("uda", FixedLogits(table), temperature=0.4, threshold=0.8)
    batch = Batch({"weak": image(0.1)}, torch.tensor([0]),
                  {"weak": image(0.2, 0.3), "strong": image(0.4, 0.5)})
    out = algo.training_step(batch, StepContext(3, 10))
    # 0.2: max p = e^3/(e^3+2) = 0.909 >= 0.8 kept; 0.3: 0.45 masked
    q = softmax([3.0 / 0.4, 0.0, 0.0])
    assert sharpen(torch.tensor([softmax(table[0.2])]), 0.4)[0].tolist() == pytest.approx(q)
    unsup = -sum(qc * math.log(pc) for qc, pc in zip(q, softmax(table[0.4]), strict=True)) / 2
    logged = pseudo_label_log(out, torch.tensor([0, 1]))
    assert logged["mask_rate"].item() == 0.5 and logged["pseudo_acc"].item() == 1.0
    assert out.log["loss/unsup"].item() == pytest.approx(unsup, rel=1e-5)
    assert out.loss.item() == pytest.approx(ce(table[0.1], 0) + unsup, rel=1e-5)


def test_uda_training_signal_annealing_drops_already_confident_labels() -> None:
    assert tsa_threshold("linear", 0.5, 5) == pytest.approx(0.5 * 0.8 + 0.2)
    assert tsa_threshold("log", 0.5, 5) == pytest.approx((1 - math.exp(-2.5)) * 0.8 + 0.2)
    assert tsa_threshold("exp", 0.5, 5) == pytest.approx(math.exp(-2.5) * 0.8 + 0.2)
    assert tsa_threshold("none", 0.0, 5) == 1.0
    table = {0.1: [3.0, 0.0, 0.0], 0.2: [0.0, 0.0, 0.0], 0.3: [0.0, 0.0, 0.0],
             0.4: [0.0, 0.0, 0.0]}
    algo = make("uda", FixedLogits(table), tsa="linear")
    batch = Batch({"weak": image(0.1, 0.2)}, torch.tensor([0, 1]),
                  {"weak": image(0.3), "strong": image(0.4)})
    # progress 0.5, K = 3: eta = 0.5 * 2/3 + 1/3 = 2/3; p(correct) 0.909 dropped, 1/3 kept
    out = algo.training_step(batch, StepContext(5, 10))
    assert out.log["tsa_threshold"] == pytest.approx(2 / 3)
    assert out.log["sup_mask_rate"].item() == 0.5
    assert out.log["loss/sup"].item() == pytest.approx(math.log(3) / 2, rel=1e-5)
