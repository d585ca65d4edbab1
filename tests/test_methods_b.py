"""MixMatch, CCSSL, FlexMatch and FreeMatch against hand computations on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import FixedLogits
from torch import nn

from aerossl.algorithms import Batch, StepContext, get_algorithm
from aerossl.algorithms.ccssl import positive_weights
from aerossl.algorithms.contrastive import contrastive_loss, nt_xent
from aerossl.algorithms.flexmatch import convex_threshold, learning_effect
from aerossl.algorithms.freematch import fairness_loss
from aerossl.algorithms.mixing import mixup
from aerossl.algorithms.mixmatch import interleave
from aerossl.algorithms.targets import sharpen
from aerossl.augment import build_pipeline
from aerossl.engine.pseudo_stats import pseudo_label_log
from aerossl.errors import ConfigError
from aerossl.models import create_model
from aerossl.models.normalize import Normalized
from aerossl.validate import config_from_dict


def image(*values: float) -> torch.Tensor:
    return torch.cat([torch.full((1, 1, 2, 2), v) for v in values])


def make(name: str, model: nn.Module, num_classes: int = 3, num_images: int = 0, **params):
    cls = get_algorithm(name)
    return cls(model, cls.Params(**params), num_classes=num_classes, num_images=num_images)


def ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def softmax(logits: list[float]) -> list[float]:
    e = [math.exp(v) for v in logits]
    return [v / sum(e) for v in e]


# ------------------------------------------------------------------------------ MixMatch


def test_sharpen_raises_to_one_over_t_and_renormalises() -> None:
    out = sharpen(torch.tensor([[0.6, 0.3, 0.1]]), 0.5)
    expected = torch.tensor([[0.36, 0.09, 0.01]]) / 0.46
    assert torch.allclose(out, expected)


@pytest.mark.parametrize("seed", range(5))
def test_mixup_keeps_each_row_closest_to_itself_and_mixes_targets_alike(seed: int) -> None:
    torch.manual_seed(seed)
    eye = torch.eye(6)
    x, t, lam = mixup(eye * 3.0, eye, alpha=0.75, keep_larger=True)
    assert 0.5 <= lam <= 1.0
    assert torch.allclose(x, 3.0 * t)  # same lambda and the same permutation
    rest = t - lam * eye  # row i = lam e_i + (1 - lam) e_perm(i)
    assert (rest >= -1e-6).all()
    assert torch.allclose(rest.sum(1), torch.full((6,), 1 - lam))
    assert (t.diagonal() >= 0.5).all()


def test_interleave_gives_every_chunk_a_slice_of_each_and_is_its_own_inverse() -> None:
    chunks = [torch.full((5,), float(i)) for i in range(4)]  # slices of sizes 1, 1, 1, 2
    mixed = interleave(chunks)
    assert [len(c) for c in mixed] == [5, 5, 5, 5]
    assert mixed[0].tolist() == [0.0, 1.0, 2.0, 3.0, 3.0]
    assert mixed[2].tolist() == [2.0, 2.0, 0.0, 2.0, 2.0]
    back = interleave(mixed)
    for a, b in zip(back, chunks, strict=True):
        assert torch.equal(a, b)


def no_mixing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make MixUp draw lam = 1, so it leaves every row as it is."""
    monkeypatch.setattr(torch.distributions.Beta, "sample", lambda self, *a: torch.tensor(1.0))


def test_mixmatch_step_without_mixing_is_ce_plus_mse_to_the_sharpened_average_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_mixing(monkeypatch)
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [1.0, 0.0, 0.0], 0.3: [0.0, 1.0, 0.0]}
    algo = make("mixmatch", FixedLogits(table), lambda_u=100.0, rampup=0.0)
    batch = Batch(labeled={"weak": image(0.1)}, labels=torch.tensor([0]),
                  unlabeled={"weak0": image(0.2), "weak1": image(0.3)})
    out = algo.training_step(batch, StepContext(5, 10))
    assert out.log["mix_lambda"] == 1.0

    p = [(a + b) / 2 for a, b in zip(softmax(table[0.2]), softmax(table[0.3]), strict=True)]
    q = [v**2 / sum(w**2 for w in p) for v in p]  # T = 0.5
    mse = sum((s - qc) ** 2 for view in (0.2, 0.3)
              for s, qc in zip(softmax(table[view]), q, strict=True)) / 6
    sup = ce(table[0.1], 0)
    assert math.isclose(out.log["loss/sup"].item(), sup, rel_tol=1e-4)
    assert math.isclose(out.log["loss/unsup"].item(), mse, rel_tol=1e-4)
    assert math.isclose(out.loss.item(), sup + 100 * mse, rel_tol=1e-4)
    logged = pseudo_label_log(out, torch.tensor([0]))
    assert logged["mask_rate"].item() == 1.0 and logged["pseudo_acc"].item() == 1.0


def test_mixmatch_ramps_lambda_u_linearly_and_asks_for_k_weak_views(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_mixing(monkeypatch)
    algo = make("mixmatch", FixedLogits({}), lambda_u=100.0, rampup=0.5, num_augs=3)
    assert set(algo.views(algo.p).unlabeled) == {"weak0", "weak1", "weak2"}
    table = {0.1: [1.0, 0.0, 0.0], 0.2: [0.0, 1.0, 0.0]}
    algo = make("mixmatch", FixedLogits(table), lambda_u=100.0, rampup=0.5)
    batch = Batch(labeled={"weak": image(0.1)}, labels=torch.tensor([0]),
                  unlabeled={"weak0": image(0.2), "weak1": image(0.2)})
    assert math.isclose(algo.training_step(batch, StepContext(10, 100)).log["lambda_u"], 20.0)
    assert algo.training_step(batch, StepContext(60, 100)).log["lambda_u"] == 100.0


# ------------------------------------------------------------------------------ CCSSL


def test_ccssl_positive_pairs_need_equal_confident_pseudo_labels() -> None:
    pseudo = torch.tensor([0, 0, 1, 0, 1])
    confidence = torch.tensor([0.9, 0.85, 0.95, 0.5, 0.99])
    w = positive_weights(pseudo, confidence, threshold=0.8)
    expected = torch.eye(5)
    expected[0, 1] = expected[1, 0] = 0.9 * 0.85  # same class, both confident
    expected[2, 4] = expected[4, 2] = 0.95 * 0.99
    # image 3 is class 0 but unsure: only its own other view is a positive
    assert torch.allclose(w, expected)


def test_ccssl_contrastive_loss_matches_a_hand_computation() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    w = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    t = 0.5
    z = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]]
    image_of = [0, 1, 0, 1]
    total = 0.0
    for a in range(4):
        others = [b for b in range(4) if b != a]
        logits = {b: (z[a][0] * z[b][0] + z[a][1] * z[b][1]) / t for b in others}
        log_norm = math.log(sum(math.exp(v) for v in logits.values()))
        weights = {b: float(w[image_of[a], image_of[b]]) for b in others}
        total += -sum(weights[b] * (logits[b] - log_norm) for b in others) / sum(weights.values())
    loss = contrastive_loss(z1, z2, t, w)
    assert math.isclose(loss.item(), total / 4, rel_tol=1e-5)


def test_ccssl_without_class_positives_is_simclr_nt_xent() -> None:
    g = torch.Generator().manual_seed(0)
    z1 = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    z2 = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    z = torch.cat([z1, z2])
    logits = (z @ z.T / 0.07).fill_diagonal_(float("-inf"))
    partner = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    expected = F.cross_entropy(logits, partner)
    assert torch.allclose(contrastive_loss(z1, z2, 0.07, torch.eye(4)), expected)
    assert torch.allclose(contrastive_loss(z1, z2, 0.07), expected)  # NT-Xent: W = I
    assert torch.allclose(nt_xent(z1 * 3, z2 * 3, 0.07)[0], expected)  # normalises


def test_ccssl_trains_its_projection_head_and_logs_the_contrastive_loss() -> None:
    torch.manual_seed(0)
    net = Normalized(create_model("cnn", 3, 3, widths=[8, 8, 8]), [0.5] * 3, [0.25] * 3)
    algo = make("ccssl", net, threshold=0.0, contrast_threshold=0.0)
    assert any(k.startswith("projection.") for k in algo.state_dict())
    x = torch.rand(8, 3, 16, 16)
    batch = Batch(labeled={"weak": x[:2]}, labels=torch.tensor([0, 1]),
                  unlabeled={"weak": x[2:], "strong": x[2:], "contrast": x[2:].flip(3)})
    out = algo.training_step(batch, StepContext(0, 10))
    out.loss.backward()
    assert out.log["loss/contrast"] > 0 and out.mask.mean() == 1.0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in algo.projection.parameters())
    assert torch.allclose(net.forward_head(net.forward_features(x)), net(x))


def test_ccssl_config_must_declare_the_contrast_pipeline() -> None:
    raw = {"algorithm": {"name": "ccssl"}}
    with pytest.raises(ConfigError, match="needs augment pipelines \\['contrast'\\]"):
        config_from_dict(raw)


def test_colour_jitter_and_grayscale_work_on_any_channel_count() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 4, 8, 8, generator=g)
    gray = build_pipeline([{"name": "random_grayscale", "p": 1.0}])(x, g)
    assert torch.allclose(gray, x.mean(1, keepdim=True).expand_as(x))
    assert torch.equal(build_pipeline([{"name": "random_grayscale", "p": 0.0}])(x, g), x)
    jitter = build_pipeline([{"name": "color_jitter", "p": 0.0}])
    assert torch.allclose(jitter(x, g), x, atol=1e-6)
    op = build_pipeline([{"name": "color_jitter", "brightness": 0.5, "contrast": 0.0,
                          "saturation": 0.0, "hue": 0.0, "p": 1.0}]).ops[0]
    params = op.sample(6, g)
    assert ((params["brightness"] >= 0.5) & (params["brightness"] <= 1.5)).all()
    assert torch.equal(params["contrast"], torch.ones(6))
    out = op.apply(x, params)
    assert torch.allclose(out, (x * params["brightness"].float().view(-1, 1, 1, 1)).clamp(0, 1))
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ConfigError, match="color_jitter"):
        build_pipeline([{"name": "color_jitter", "brightness": 2.0}])


# ------------------------------------------------------------------------------ FlexMatch


def test_flexmatch_learning_effect_and_convex_thresholds_from_a_hand_built_buffer() -> None:
    selected = torch.tensor([0, 0, 0, 1, 1, -1, -1, -1, -1, 2])
    seen = torch.ones(10, dtype=torch.bool)
    # counts (3, 2, 1); warm-up normaliser max(3, 4 unused) = 4
    beta = learning_effect(selected, seen, 3, warmup=True)
    assert torch.allclose(beta, torch.tensor([0.75, 0.5, 0.25]))
    assert torch.allclose(convex_threshold(0.95, beta),
                          0.95 * torch.tensor([0.75 / 1.25, 0.5 / 1.5, 0.25 / 1.75]))
    beta = learning_effect(selected, seen, 3, warmup=False)
    assert torch.allclose(convex_threshold(0.95, beta), 0.95 * torch.tensor([1.0, 0.5, 0.2]))
    seen[5:9] = False  # images never drawn do not count as unused
    assert torch.allclose(learning_effect(selected, seen, 3, warmup=True), beta)


def test_flexmatch_update_remembers_confident_predictions_only() -> None:
    algo = make("flexmatch", FixedLogits({}), num_images=10)
    algo.thresholds.selected_label.copy_(torch.tensor([0, 0, 0, 1, 1, -1, -1, -1, -1, 2]))
    algo.thresholds.seen.fill_(True)
    algo.thresholds.update(torch.tensor([5, 6, 0]), torch.tensor([0.97, 0.5, 0.99]),
                           torch.tensor([2, 1, 1]))
    assert algo.thresholds.selected_label.tolist() == [1, 0, 0, 1, 1, 2, -1, -1, -1, 2]
    # counts (2, 3, 2), 3 unused -> beta (2/3, 1, 2/3) -> M = (0.5, 1, 0.5)
    assert torch.allclose(algo.thresholds.class_threshold, 0.95 * torch.tensor([0.5, 1.0, 0.5]))
    assert {"thresholds.selected_label", "thresholds.seen",
            "thresholds.class_threshold"} <= set(algo.state_dict())


def test_flexmatch_masks_with_the_thresholds_before_this_steps_update() -> None:
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [3.0, 0.0, 0.0], 0.3: [0.0, 0.4, 0.0],
             0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 1.0]}
    algo = make("flexmatch", FixedLogits(table), num_images=4)
    algo.thresholds.class_threshold.copy_(torch.tensor([0.5, 0.5, 0.5]))
    batch = Batch(labeled={"weak": image(0.1)}, labels=torch.tensor([0]),
                  unlabeled={"weak": image(0.2, 0.3), "strong": image(0.4, 0.5)},
                  unlabeled_index=torch.tensor([1, 3]))
    out = algo.training_step(batch, StepContext(0, 10))
    # A: p = e^3/(e^3+2) = 0.909 >= 0.5 kept; B: 0.40 < 0.5 masked
    assert out.mask.tolist() == [1.0, 0.0]
    assert math.isclose(out.log["loss/unsup"].item(), ce(table[0.4], 0) / 2, rel_tol=1e-5)
    # A is below tau = 0.95, so nothing is remembered; both count as unused -> thresholds 0
    assert algo.thresholds.selected_label.tolist() == [-1, -1, -1, -1]
    assert algo.thresholds.seen.tolist() == [False, True, False, True]
    assert torch.equal(algo.thresholds.class_threshold, torch.zeros(3))


# ------------------------------------------------------------------------------ FreeMatch


def test_freematch_ema_update_and_class_thresholds_by_hand() -> None:
    algo = make("freematch", FixedLogits({}), ema_momentum=0.9)
    assert math.isclose(algo.thresholds.global_threshold.item(), 1 / 3, rel_tol=1e-6)
    algo.thresholds.update(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    tau = 0.9 / 3 + 0.1 * 0.65
    p_model = [0.9 / 3 + 0.1 * v for v in (0.4, 0.25, 0.35)]
    hist = [0.9 / 3 + 0.1 * v for v in (0.5, 0.0, 0.5)]
    assert math.isclose(algo.thresholds.global_threshold.item(), tau, rel_tol=1e-6)
    assert torch.allclose(algo.thresholds.p_model, torch.tensor(p_model))
    assert torch.allclose(algo.thresholds.label_hist, torch.tensor(hist))
    assert torch.allclose(algo.thresholds.class_thresholds(),
                          torch.tensor([v / max(p_model) * tau for v in p_model]))


def test_freematch_step_masks_against_the_updated_class_thresholds() -> None:
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [8.0, 0.0, 0.0], 0.3: [0.1, 0.0, 0.0],
             0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 1.0]}
    algo = make("freematch", FixedLogits(table), ema_momentum=0.5, fairness_weight=0.0)
    batch = Batch(labeled={"weak": image(0.1)}, labels=torch.tensor([0]),
                  unlabeled={"weak": image(0.2, 0.3), "strong": image(0.4, 0.5)})
    out = algo.training_step(batch, StepContext(0, 10))
    pa, pb = softmax(table[0.2]), softmax(table[0.3])
    tau = 0.5 / 3 + 0.5 * (max(pa) + max(pb)) / 2
    p_model = [0.5 / 3 + 0.5 * (a + b) / 2 for a, b in zip(pa, pb, strict=True)]
    thresholds = [v / max(p_model) * tau for v in p_model]
    assert max(pa) >= thresholds[0] and max(pb) < thresholds[0]  # A kept, B masked
    assert out.mask.tolist() == [1.0, 0.0]
    assert math.isclose(out.log["loss/unsup"].item(), ce(table[0.4], 0) / 2, rel_tol=1e-5)
    assert math.isclose(out.log["threshold/global"].item(), tau, rel_tol=1e-5)


def test_freematch_fairness_loss_by_hand() -> None:
    logits = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
    mask = torch.tensor([1.0, 1.0, 0.0])
    p_model = [0.5, 0.3, 0.2]
    label_hist = [0.4, 0.4, 0.2]
    target = [p / h for p, h in zip(p_model, label_hist, strict=True)]
    target = [v / sum(target) for v in target]
    probs = [softmax(row) for row in logits[:2]]
    hist = [0.5, 0.5, 0.0]  # arg-max classes 0 and 1 of the two kept rows
    mean = [(probs[0][c] + probs[1][c]) / 2 / hist[c] if hist[c] else 0.0 for c in range(3)]
    mean = [v / sum(mean) for v in mean]
    expected = sum(t * math.log(m + 1e-12) for t, m in zip(target, mean, strict=True))
    out = fairness_loss(torch.tensor(logits), mask, torch.tensor(p_model),
                        torch.tensor(label_hist))
    assert math.isclose(out.item(), expected, rel_tol=1e-5)
    assert fairness_loss(torch.tensor(logits), torch.zeros(3), torch.tensor(p_model),
                         torch.tensor(label_hist)).item() == 0.0


def test_mixmatch_label_guessing_leaves_batch_norm_statistics_unchanged() -> None:
    from aerossl.algorithms import mixmatch, utils

    assert mixmatch.frozen_bn_stats is utils.frozen_bn_stats  # one meaning, VAT's too
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad(), mixmatch.frozen_bn_stats(net):
        y = net(torch.rand(4, 3, 5, 5) + 3)
    assert torch.allclose(y.mean((0, 2, 3)), net[1].bias, atol=1e-5)  # batch statistics
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_mixmatch_refuses_labeled_mix_which_it_would_ignore() -> None:
    with pytest.raises(ConfigError, match=r"labeled_mix='mixup': mixmatch already mixes"):
        config_from_dict({"algorithm": {"name": "mixmatch", "labeled_mix": "mixup"}})
    assert config_from_dict({"algorithm": {"name": "mixmatch", "labeled_mix": "none"}})


# ------------------------------------------------------------------ shared parts


def test_flexmatch_and_freematch_are_fixmatch_with_another_selector() -> None:
    from aerossl.algorithms.fixmatch import FixMatch
    from aerossl.algorithms.selectors import FixedThreshold, FlexThresholds, FreeThresholds

    kinds = {"fixmatch": FixedThreshold, "flexmatch": FlexThresholds,
             "freematch": FreeThresholds}
    for name, selector in kinds.items():
        algo = make(name, FixedLogits({}), num_images=4)
        assert isinstance(algo, FixMatch) and type(algo.thresholds) is selector, name
    # with FlexMatch's class thresholds all at tau (and no update), its step is FixMatch's
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [3.0, 0.0, 0.0], 0.3: [0.0, 0.4, 0.0],
             0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 1.0]}
    batch = Batch(labeled={"weak": image(0.1)}, labels=torch.tensor([0]),
                  unlabeled={"weak": image(0.2, 0.3), "strong": image(0.4, 0.5)})
    flex = make("flexmatch", FixedLogits(table), num_images=4, threshold=0.6)
    flex.thresholds.class_threshold.fill_(0.6)
    fix = make("fixmatch", FixedLogits(table), threshold=0.6)
    out_flex, out_fix = (a.training_step(batch, StepContext(0, 10)) for a in (flex, fix))
    assert out_fix.mask.tolist() == [1.0, 0.0]
    assert torch.equal(out_flex.loss, out_fix.loss) and torch.equal(out_flex.mask, out_fix.mask)


def test_weak_strong_logits_with_contrast_views_returns_their_features() -> None:
    torch.manual_seed(0)
    net = Normalized(create_model("cnn", 3, 3, widths=[8, 8, 8]), [0.5] * 3, [0.25] * 3).eval()
    algo = make("fixmatch", net)
    x, w, s, c = (torch.rand(n, 3, 16, 16) for n in (2, 3, 3, 3))
    plain = algo.weak_strong_logits(x, w, s)
    with_contrast = algo.weak_strong_logits(x, w, s, contrast=c)
    assert len(plain) == 3 and len(with_contrast) == 4
    for a, b in zip(plain, with_contrast[:3], strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(with_contrast[3], net.forward_features(torch.cat([s, c])), atol=1e-6)
    joint = algo.weak_strong_logits(x, w, s, joint=True, contrast=c)
    assert torch.allclose(joint[1], plain[1], atol=1e-6) and not joint[1].requires_grad
    assert torch.allclose(joint[3], with_contrast[3], atol=1e-6)


def test_one_ema_update_for_the_evaluated_weights_and_the_mean_teacher() -> None:
    from aerossl.models.ema import EMA, ema_update

    avg, model = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        avg.weight.fill_(1.0)
        model.weight.fill_(3.0)
        model.running_mean.fill_(7.0)
    ema_update(avg, model, 0.75)
    assert avg.weight.tolist() == [1.5, 1.5]  # 0.75 * 1 + 0.25 * 3
    assert avg.running_mean.tolist() == [7.0, 7.0]  # buffers copied
    ema = EMA(nn.Linear(1, 1, bias=False), decay=0.999)
    target = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        ema.module.weight.fill_(0.0)
        target.weight.fill_(1.0)
    ema.update(target, step=0)  # warm-up: decay min(0.999, 1/10)
    assert ema.module.weight.item() == pytest.approx(0.9)


def test_freematch_logs_each_steps_global_threshold_not_the_live_buffer() -> None:
    """The engine averages logged values over a window: each must keep its step's value."""
    table = {0.1: [2.0, 0.0, 0.0], 0.2: [8.0, 0.0, 0.0], 0.3: [0.1, 0.0, 0.0],
             0.4: [0.0, 1.0, 0.0], 0.5: [0.0, 0.0, 1.0]}
    algo = make("freematch", FixedLogits(table), ema_momentum=0.5)
    batch = Batch(labeled={"weak": image(0.1)}, labels=torch.tensor([0]),
                  unlabeled={"weak": image(0.2, 0.3), "strong": image(0.4, 0.5)})
    first = algo.training_step(batch, StepContext(0, 10)).log["threshold/global"]
    value = float(first)
    algo.training_step(batch, StepContext(1, 10))
    assert float(algo.thresholds.global_threshold) != value
    assert float(first) == value
