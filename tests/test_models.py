"""Tests of the model zoo: registry/factory errors and the shared Classifier contract."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from aerossl.errors import ConfigError
from aerossl.models import (
    MODELS,
    Classifier,
    ResNet,
    SmallCNN,
    WideResNet,
    create_model,
    model_names,
    model_params,
    register_model,
)

NAMES = ["cnn", "wrn", "resnet18"]
SMALL = 16  # input size for the behaviour tests (shape tests use 32 and 64)
NUM_CLASSES = 7
_CACHE: dict[tuple[str, int], Classifier] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny batches: one thread is faster and robust on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(name: str, in_channels: int = 3) -> Classifier:
    """A cached, seeded model (tests that mutate it must deepcopy first)."""
    key = (name, in_channels)
    if key not in _CACHE:
        torch.manual_seed(0)
        _CACHE[key] = create_model(name, NUM_CLASSES, in_channels=in_channels)
    return _CACHE[key]


def _images(batch: int, channels: int, size: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=gen)


def test_registry_lists_all_models_sorted_and_builds_each_by_name() -> None:
    names = model_names()
    assert names == sorted(names) and len(set(names)) == len(names)
    for name, cls in (("cnn", SmallCNN), ("wrn", WideResNet), ("resnet18", ResNet)):
        assert name in names
        model = create_model(name, 3, in_channels=2)
        assert type(model) is cls and model.num_classes == 3 and model.in_channels == 2

    @register_model("aaa_first")
    def first(num_classes: int, in_channels: int = 3) -> Classifier:
        return create_model("cnn", num_classes, in_channels, widths=(4,), convs_per_stage=1)

    try:
        assert model_names()[0] == "aaa_first" and model_names()[1:] == names
    finally:
        MODELS.pop("aaa_first")
    assert model_names() == names


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_channels", [1, 3, 13])
def test_output_shape_for_channels_and_sizes(name: str, in_channels: int) -> None:
    model = _model(name, in_channels).eval()
    assert model.in_channels == in_channels
    with torch.no_grad():
        for size in (32, 64):
            out = model(_images(2, in_channels, size))
            assert out.shape == (2, NUM_CLASSES)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_forward_features_shape_and_forward_equals_head_of_features(name: str) -> None:
    model = _model(name).eval()
    x = _images(3, 3, SMALL)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert isinstance(model.num_features, int)
        assert feats.shape == (3, model.num_features)
        torch.testing.assert_close(model(x), model.head(feats))


@pytest.mark.parametrize("name", NAMES)
def test_contract_attributes(name: str) -> None:
    model = _model(name, 13)
    assert isinstance(model, Classifier)
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == model.num_features
    assert model.num_classes == NUM_CLASSES
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.stem_conv is first_conv
    assert any(m is first_conv for m in model.stem.modules())
    assert model.get_submodule(model.stem_conv_name) is first_conv
    assert model.stem_conv.in_channels == model.in_channels == 13


@pytest.mark.parametrize("name", NAMES)
def test_works_with_smallest_supported_input(name: str) -> None:
    model = copy.deepcopy(_model(name)).train()
    assert model(_images(2, 3, 8)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [False, True])
def test_channels_last_output_equals_contiguous(name: str, train: bool) -> None:
    model = copy.deepcopy(_model(name)).train(train)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = _images(4, 3, SMALL)
    with torch.no_grad():
        expected = model(x)
        got = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_stem_conv(name: str) -> None:
    model = copy.deepcopy(_model(name)).train()
    loss = nn.functional.cross_entropy(model(_images(4, 3, SMALL)), torch.arange(4))
    loss.backward()
    grad = model.stem_conv.weight.grad
    assert grad is not None
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_reset_head_changes_output_dim(name: str) -> None:
    model = copy.deepcopy(_model(name)).eval()
    x = _images(2, 3, SMALL)
    with torch.no_grad():
        feats = model.forward_features(x)
        model.reset_head(3)
        assert isinstance(model.head, nn.Linear)
        assert model.num_classes == 3 and model.head.in_features == model.num_features
        assert model(x).shape == (2, 3)
        torch.testing.assert_close(model.forward_features(x), feats)
    with pytest.raises(ConfigError):
        model.reset_head(0)


@pytest.mark.parametrize("name", NAMES)
def test_set_stem_conv_adapts_input_channels(name: str) -> None:
    model = copy.deepcopy(_model(name)).eval()
    old = model.stem_conv
    new = nn.Conv2d(13, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    model.set_stem_conv(new)
    assert model.stem_conv is new and model.in_channels == 13
    with torch.no_grad():
        assert model(_images(2, 13, SMALL)).shape == (2, NUM_CLASSES)
    with pytest.raises(ConfigError, match="output channels"):
        model.set_stem_conv(nn.Conv2d(13, old.out_channels + 1, 3))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_init(name: str) -> None:
    torch.manual_seed(123)
    a = create_model(name, 5, in_channels=4).state_dict()
    torch.manual_seed(123)
    b = create_model(name, 5, in_channels=4).state_dict()
    torch.manual_seed(124)
    c = create_model(name, 5, in_channels=4).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])


def test_unknown_model_name_suggests_closest() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'wrn28'; did you mean 'wrn'\?"):
        create_model("wrn28", 10)
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        model_params("resnet_18")
    with pytest.raises(ConfigError, match=r"unknown model 'xyz' \(available: cnn"):
        create_model("xyz", 10)


def test_unknown_kwarg_names_model_parameter_and_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        create_model("cnn", 10, width=(8, 16))
    msg = str(err.value)
    assert "model 'cnn'" in msg and "'width'" in msg and "did you mean 'widths'?" in msg
    for valid in ("widths", "convs_per_stage", "dropout", "bn_momentum"):
        assert valid in msg
    with pytest.raises(ConfigError, match="model 'resnet18' has no parameter 'small_inputs'"):
        create_model("resnet18", 10, small_inputs=False)


def test_model_params_lists_kwargs_with_defaults() -> None:
    assert model_params("wrn") == {
        "depth": 28,
        "widen_factor": 2,
        "dropout": 0.0,
        "bn_momentum": 0.001,
    }
    assert model_params("cnn")["widths"] == (32, 64, 128, 256)
    assert model_params("resnet18") == {"small_input": True, "zero_init_residual": False}


@pytest.mark.parametrize("name", NAMES)
def test_the_listed_defaults_are_the_ones_a_model_is_built_with(name: str) -> None:
    """Passing model_params' values explicitly builds the very same network as passing
    nothing (same modules and options, same initial weights)."""
    torch.manual_seed(3)
    implicit = create_model(name, 5)
    torch.manual_seed(3)
    explicit = create_model(name, 5, **model_params(name))
    assert repr(explicit) == repr(implicit)  # layers, widths, dropout p, BN momentum
    a, b = implicit.state_dict(), explicit.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(2, 3, 16, 16)
    implicit.train(), explicit.train()
    torch.manual_seed(4)
    out_implicit = implicit(x)
    torch.manual_seed(4)
    assert torch.equal(explicit(x), out_implicit)  # dropout included


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("wrn", {"depth": 27}),
        ("wrn", {"dropout": 1.5}),
        ("cnn", {"widths": []}),
        ("cnn", {"convs_per_stage": 0}),
        ("cnn", {"bn_momentum": 0}),
    ],
)
def test_invalid_values_raise_config_error(name: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=f"model '{name}'"):
        create_model(name, 10, **kwargs)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_invalid_num_classes_or_channels_raise(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("cnn", bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="in_channels"):
        create_model("cnn", 10, in_channels=bad)  # type: ignore[arg-type]


def test_wrn_28_2_matches_fixmatch_reference_size_and_init() -> None:
    model = _model("wrn")
    # FixMatch WRN-28-2 has 1,467,610 parameters for 10 classes.
    n = sum(p.numel() for p in model.parameters()) - (NUM_CLASSES - 10) * (128 + 1)
    assert n == 1_467_610
    assert model.num_features == 128
    assert torch.count_nonzero(model.head.bias) == 0
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bn.momentum == 0.001 for bn in bns)
    assert all(torch.all(bn.weight == 1) and torch.all(bn.bias == 0) for bn in bns)
    assert any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in model.modules())
    wide = create_model("wrn", 10, depth=10, widen_factor=1, dropout=0.3)
    assert wide.num_features == 64


def test_cnn_options() -> None:
    model = create_model("cnn", 4, widths=(8, 16), convs_per_stage=1, dropout=0.5)
    assert model.num_features == 16
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 2
    assert isinstance(model.head_drop, nn.Dropout)
    assert model(_images(2, 3, 17)).shape == (2, 4)  # odd sizes work too


def test_resnet18_stems_and_zero_init_residual() -> None:
    small = _model("resnet18")
    assert small.stem_conv.kernel_size == (3, 3) and small.stem_conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.modules())
    # torchvision resnet18 has 11,689,512 parameters (7x7 stem, 1000 classes)
    big = create_model("resnet18", 1000, small_input=False, zero_init_residual=True)
    assert sum(p.numel() for p in big.parameters()) == 11_689_512
    assert big.stem_conv.kernel_size == (7, 7) and big.stem_conv.stride == (2, 2)
    assert any(isinstance(m, nn.MaxPool2d) for m in big.stem.modules())
    assert all(torch.all(b.bn2.weight == 0) for b in big.modules() if hasattr(b, "bn2"))
    big.reset_head(NUM_CLASSES)
    with torch.no_grad():
        assert big.eval()(_images(2, 3, 64)).shape == (2, NUM_CLASSES)


def test_register_model_adds_a_model_and_rejects_bad_constructors() -> None:
    @register_model("_test_tiny")
    def tiny(num_classes: int, in_channels: int = 3, width: int = 4) -> Classifier:
        return create_model("cnn", num_classes, in_channels, widths=(width,), convs_per_stage=1)

    try:
        assert "_test_tiny" in model_names()
        assert model_params("_test_tiny") == {"width": 4}
        assert create_model("_test_tiny", 2, width=3).num_features == 3
        with pytest.raises(ConfigError, match="already registered"):
            register_model("_test_tiny")(tiny)
        with pytest.raises(TypeError, match="needs a default"):
            register_model("_test_bad")(lambda num_classes, in_channels, x: None)
        with pytest.raises(TypeError, match="keyword"):
            register_model("_test_bad")(lambda num_classes, in_channels, **kw: None)
    finally:
        MODELS.pop("_test_tiny", None)
        MODELS.pop("_test_bad", None)
