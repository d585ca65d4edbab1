"""Tests of the batched augmentations (aerossl.augment)."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from aerossl.augment import (
    AUGMENTATIONS,
    RANDAUGMENT_OPS,
    Augmentation,
    Compose,
    Crop,
    Cutout,
    Flip,
    RandAugment,
    Rot90,
    build_pipeline,
    randaugment,
    register_augmentation,
)
from aerossl.augment import functional as AF
from aerossl.errors import ConfigError

WEAK = ["flip", "rot90", {"name": "crop", "pad": 0.125}]
STRONG = [*WEAK, {"name": "randaugment", "n": 2, "m": 10}, {"name": "cutout"}]
MAGNITUDE_OPS = ["Brightness", "Color", "Contrast", "Identity", "Posterize", "Rotate",
                 "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY"]


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """The tensors here are tiny: one intra-op thread is faster (and kind to a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 6, c: int = 3, h: int = 16, w: int | None = None, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, h if w is None else w, generator=gen(seed))


def assert_valid(y: torch.Tensor, x: torch.Tensor) -> None:
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


def dihedral(img: torch.Tensor) -> list[torch.Tensor]:
    """The 8 dihedral transforms of a C×H×W image."""
    return [torch.rot90(t, k, (1, 2)) for t in (img, img.flip(2)) for k in range(4)]


# --- shape / dtype / range ---------------------------------------------------------------------

@pytest.mark.parametrize("c", [1, 3, 13])
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_registered_op_preserves_shape_dtype_and_range(name: str, c: int) -> None:
    x = batch(32, c)
    y = build_pipeline([name])(x, gen())
    assert_valid(y, x)


@pytest.mark.parametrize("c", [1, 3, 13])
@pytest.mark.parametrize("op", RANDAUGMENT_OPS)
def test_each_randaugment_op_at_full_magnitude_preserves_shape_and_range(op: str, c: int) -> None:
    x = batch(4, c)
    y = RandAugment(n=2, m=10, random_magnitude=False, ops=[op])(x, gen())
    assert_valid(y, x)


@pytest.mark.parametrize("c", [1, 3, 13])
@pytest.mark.parametrize("spec", [WEAK, STRONG], ids=["weak", "strong"])
def test_weak_and_strong_pipelines_preserve_shape_dtype_and_range(spec: list, c: int) -> None:
    x = batch(16, c)
    y = build_pipeline(spec)(x, gen())
    assert_valid(y, x)


def test_pipeline_does_not_modify_its_input() -> None:
    x = batch(16)
    before = x.clone()
    build_pipeline(STRONG)(x, gen())
    assert torch.equal(x, before)


def test_non_square_images_work_without_rot90() -> None:
    x = batch(8, 13, 12, 20)
    y = build_pipeline(["flip", "crop", "randaugment", "cutout"])(x, gen())
    assert_valid(y, x)


def test_rot90_rejects_non_square_images() -> None:
    with pytest.raises(ValueError, match="square"):
        Rot90()(batch(2, 3, 8, 10), gen())


def test_non_batch_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="B×C×H×W"):
        Flip()(torch.rand(3, 8, 8), gen())


# --- randomness ---------------------------------------------------------------------------------

def test_same_seed_gives_identical_output_and_different_seed_differs() -> None:
    pipe, x = build_pipeline(STRONG), batch(16)
    assert torch.equal(pipe(x, gen(1)), pipe(x, gen(1)))
    assert not torch.equal(pipe(x, gen(1)), pipe(x, gen(2)))


def test_params_are_cpu_tensors_and_apply_reproduces_call() -> None:
    pipe, x = build_pipeline(STRONG), batch(8)
    params = pipe.sample(8, gen(3))
    assert isinstance(params, list) and len(params) == len(pipe) == 5
    assert all(v.device.type == "cpu" and len(v) == 8 for p in params for v in p.values())
    assert torch.equal(pipe.apply(x, params), pipe(x, gen(3)))


def test_images_of_one_batch_receive_different_strong_ops() -> None:
    params = RandAugment(n=2, m=10).sample(64, gen())
    ops, mag, sign = params["ops"], params["magnitude"], params["sign"]
    assert ops.shape == mag.shape == sign.shape == (64, 2)
    assert len(ops[:, 0].unique()) > 5 and not (ops == ops[0]).all(1)[1:].all()
    assert ops.min() >= 0 and ops.max() < len(RANDAUGMENT_OPS)
    assert mag.min() >= 0 and mag.max() <= 1 and len(mag.unique()) > 100
    assert set(sign.unique().tolist()) == {-1.0, 1.0}


def test_fixed_magnitude_is_m_over_10_and_op_subset_is_respected() -> None:
    params = RandAugment(n=3, m=4, random_magnitude=False, ops=["rotate", "Solarize"]).sample(
        32, gen())
    assert torch.allclose(params["magnitude"], torch.full((32, 3), 0.4))
    names = {RANDAUGMENT_OPS[i] for i in params["ops"].flatten().tolist()}
    assert names == {"Rotate", "Solarize"}


def _draw_digest(ra: RandAugment, ops: tuple[str, ...]) -> str:
    """sha256 (first 16 hex) of a seeded draw: op names, magnitudes and signs of 64 images."""
    params = ra.sample(64, torch.Generator().manual_seed(1234))
    names = ",".join(ops[i] for i in params["ops"].flatten().tolist())
    h = hashlib.sha256(names.encode())
    h.update(params["magnitude"].numpy().tobytes())
    h.update(params["sign"].numpy().tobytes())
    return h.hexdigest()[:16]


def test_randaugment_draws_are_pinned_and_do_not_move_when_an_op_is_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every seed's strong views depend on these draws: a change here changes every strong-view
    result. If it is deliberate, update the digests and say so in the changelog."""
    default = _draw_digest(RandAugment(n=2, m=10), RANDAUGMENT_OPS)
    custom = _draw_digest(RandAugment(n=3, m=5, ops=["Solarize", "Rotate", "Color"]),
                          RANDAUGMENT_OPS)
    assert (default, custom) == ("61e8564e7cd496ae", "155d7a4a47a09b2c")
    assert randaugment.FIXMATCH_OPS == (
        "AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "Posterize",
        "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY")
    # a new op, wherever it goes in the table of known ops, leaves the default draw alone
    grown = ("Invert", *RANDAUGMENT_OPS[:7], "Zoom", *RANDAUGMENT_OPS[7:])
    monkeypatch.setattr(randaugment, "RANDAUGMENT_OPS", grown)
    assert _draw_digest(RandAugment(n=2, m=10), grown) == default


# --- geometric ops -------------------------------------------------------------------------------

def test_flip_rot90_output_of_each_image_is_one_of_its_dihedral_transforms() -> None:
    x = batch(32, 3, 8)
    y = build_pipeline(["flip", "rot90"])(x, gen())
    seen = set()
    for xi, yi in zip(x, y, strict=True):
        matches = [i for i, t in enumerate(dihedral(xi)) if torch.equal(t, yi)]
        assert matches
        seen.add(matches[0])
    assert len(seen) >= 5  # the transforms really vary over the batch


def test_flip_mirrors_exactly_the_images_whose_flags_are_drawn() -> None:
    x = batch(4, 13, 6, 10)
    params = {"hflip": torch.tensor([False, True, False, True]),
              "vflip": torch.tensor([False, False, True, True])}
    y = Flip().apply(x, params)
    expected = [x[0], x[1].flip(2), x[2].flip(1), x[3].flip(1).flip(2)]
    assert all(torch.equal(a, b) for a, b in zip(y, expected, strict=True))


def test_crop_with_zero_pad_is_identity() -> None:
    x = batch(5)
    assert torch.equal(Crop(pad=0)(x, gen()), x)


@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_crop_is_a_shifted_window_of_the_reflect_padded_image(size: tuple[int, int]) -> None:
    x = batch(24, 2, *size)
    crop = Crop(pad=0.25)
    params = crop.sample(24, gen())
    y = crop.apply(x, params)
    ph, pw = crop.pixels(*size)
    top, left = crop.offsets(params, *size)
    padded = F.pad(x, (pw, pw, ph, ph), mode="reflect")
    for i in range(24):
        t, l_ = int(top[i]), int(left[i])
        assert torch.equal(y[i], padded[i, :, t:t + size[0], l_:l_ + size[1]])
    assert len(set(top.tolist())) > 3 and top.max() <= 2 * ph and left.max() <= 2 * pw


def test_cutout_fills_one_grey_square_clipped_at_the_border() -> None:
    x = torch.zeros(3, 2, 16, 16)
    cut = Cutout(size=0.5)
    params = {"cy": torch.tensor([0.5, 0.0, 0.99]), "cx": torch.tensor([0.5, 0.0, 0.3])}
    y = cut.apply(x, params)
    filled = y[:, 0] == 0.5
    assert torch.equal(filled, y[:, 1] == 0.5)  # all channels
    # 8×8 in the middle; 4×4 at the corner; rows 11..15 (centre row 15) × columns 0..7
    assert filled.sum((1, 2)).tolist() == [64, 16, 40]
    assert filled[0, 4:12, 4:12].all() and filled[1, :4, :4].all()
    assert ((y == 0) | (y == 0.5)).all()


# --- RandAugment ops ---------------------------------------------------------------------------

@pytest.mark.parametrize("c", [1, 3, 13])
@pytest.mark.parametrize("op", MAGNITUDE_OPS)
def test_randaugment_op_with_zero_magnitude_is_identity(op: str, c: int) -> None:
    x = batch(6, c, 12)
    y = RandAugment(n=2, m=0, random_magnitude=False, ops=[op])(x, gen())
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_equalize_of_a_constant_image_is_finite_and_unchanged() -> None:
    x = torch.full((2, 13, 8, 8), 0.3)
    y = AF.equalize(x)
    assert torch.isfinite(y).all() and torch.equal(y, x)


def test_equalize_and_autocontrast_spread_levels_per_channel() -> None:
    x = batch(4, 5, 32) * 0.4 + 0.3  # PIL's equalize needs > 256 pixels to change anything
    for y in (AF.equalize(x), AF.auto_contrast(x)):
        assert torch.allclose(y.amin((2, 3)), torch.zeros(4, 5), atol=0.02)
        assert torch.allclose(y.amax((2, 3)), torch.ones(4, 5))


def test_color_greys_with_luma_for_rgb_and_channel_mean_otherwise() -> None:
    rgb = batch(2, 3)
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(AF.color(rgb, torch.zeros(2)), luma.expand_as(rgb))
    ms = batch(2, 13)
    torch.testing.assert_close(AF.color(ms, torch.zeros(2)), ms.mean(1, keepdim=True).expand_as(ms))
    one = batch(2, 1)
    torch.testing.assert_close(AF.color(one, torch.zeros(2)), one)


def test_affine_rotation_by_90_degrees_equals_rot90_and_translation_shifts_pixels() -> None:
    x = batch(2, 3, 9)
    rot = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]]).expand(2, 2, 3)
    torch.testing.assert_close(AF.affine(x, rot), torch.rot90(x, 1, (2, 3)), atol=1e-5, rtol=0)
    x = batch(2, 3, 8, 12)
    shift = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, 2.0]]]).expand(2, 2, 3)
    torch.testing.assert_close(AF.affine(x, shift)[..., :-2, :-3], x[..., 2:, 3:], atol=1e-5,
                               rtol=0)


def test_geometric_ops_move_the_image() -> None:
    x = batch(4, 3, 16)
    for op in ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"]:
        y = RandAugment(n=1, m=10, random_magnitude=False, ops=[op])(x, gen())
        assert (y - x).abs().mean() > 0.05, op


def test_colour_ops_match_pil_on_8bit_images() -> None:
    pil = pytest.importorskip("PIL.Image")
    ops = pytest.importorskip("PIL.ImageOps")
    enh = pytest.importorskip("PIL.ImageEnhance")
    np = pytest.importorskip("numpy")
    q = (torch.rand(3, 3, 12, 10, generator=gen()) ** 2 * 200 + 20).round()
    x, f = q / 255, torch.full((3,), 1.6)

    def ref(fn) -> torch.Tensor:
        imgs = [fn(pil.fromarray(q[i].permute(1, 2, 0).byte().numpy())) for i in range(3)]
        return torch.stack([torch.tensor(np.array(im)).permute(2, 0, 1) for im in imgs]) / 255

    torch.testing.assert_close(AF.equalize(x), ref(ops.equalize), atol=1e-6, rtol=0)
    torch.testing.assert_close(AF.posterize(x, torch.full((3,), 5)),
                               ref(lambda im: ops.posterize(im, 5)), atol=1e-6, rtol=0)
    torch.testing.assert_close(AF.solarize(x, torch.full((3,), 128 / 255)),
                               ref(lambda im: ops.solarize(im, 128)), atol=1e-5, rtol=0)
    torch.testing.assert_close(AF.auto_contrast(x), ref(ops.autocontrast), atol=1.01 / 255,
                               rtol=0)
    for ours, name in [(AF.brightness, "Brightness"), (AF.color, "Color"),
                       (AF.contrast, "Contrast"), (AF.sharpness, "Sharpness")]:
        theirs = ref(lambda im, n=name: getattr(enh, n)(im).enhance(1.6))
        torch.testing.assert_close(ours(x, f), theirs, atol=1.5 / 255, rtol=0, msg=name)


# --- build_pipeline and registry ---------------------------------------------------------------

def test_build_pipeline_accepts_names_and_dicts() -> None:
    pipe = build_pipeline(STRONG)
    assert isinstance(pipe, Compose)
    assert [type(op) for op in pipe.ops] == [Flip, Rot90, Crop, RandAugment, Cutout]
    assert pipe.ops[2].pad == 0.125 and pipe.ops[3].n == 2
    assert len(build_pipeline([])) == 0 and len(build_pipeline(None)) == 0


def test_unknown_op_name_error_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="unknown augmentation 'randaugmnt'; did you mean "
                                          "'randaugment'\\?"):
        build_pipeline(["flip", {"name": "randaugmnt"}])


@pytest.mark.parametrize(("spec", "pattern"), [
    ([{"name": "crop", "padd": 0.1}], "'crop' has no parameter 'padd'; did you mean 'pad'"),
    ([{"name": "crop", "pad": 0.9}], "'crop': parameter 'pad' must be a number in"),
    ([{"name": "crop", "pad": "big"}], "'crop': parameter 'pad'"),
    ([{"name": "randaugment", "n": 1.5}], "'randaugment': parameter 'n' must be an integer"),
    ([{"name": "randaugment", "m": 11}], "'randaugment': parameter 'm'"),
    ([{"name": "randaugment", "random_magnitude": "yes"}], "parameter 'random_magnitude'"),
    ([{"name": "randaugment", "ops": ["Rotat"]}], "unknown op 'Rotat'.*did you mean 'Rotate'"),
    ([{"name": "randaugment", "ops": []}], "parameter 'ops'"),
    ([{"name": "cutout", "size": -0.1}], "'cutout': parameter 'size'"),
    ([{"pad": 0.1}], "needs a string 'name'"),
    ([3], "entry 0"),
    ("flip", "list"),
])
def test_build_pipeline_rejects_bad_params_naming_op_and_param(spec: object,
                                                               pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_pipeline(spec)  # type: ignore[arg-type]


def test_register_augmentation_makes_a_new_op_buildable() -> None:
    @register_augmentation("test_invert")
    class Invert(Augmentation):
        def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict:
            return {}

        def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
            return 1 - x

    try:
        x = batch(2)
        assert torch.equal(build_pipeline(["test_invert"])(x, gen()), 1 - x)
        with pytest.raises(ValueError, match="already registered"):
            register_augmentation("flip")(Invert)
    finally:
        del AUGMENTATIONS["test_invert"]


# --- devices -------------------------------------------------------------------------------------

def test_strong_pipeline_runs_on_meta_tensors() -> None:
    x = torch.empty(8, 13, 16, 16, device="meta")
    y = build_pipeline(STRONG)(x, gen())
    assert y.shape == x.shape and y.device.type == "meta" and y.dtype == x.dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_output_matches_cpu_for_the_same_generator_state() -> None:
    pipe, x = build_pipeline(STRONG), batch(32, 13)
    y_cpu = pipe(x, gen(5))
    y_gpu = pipe(x.cuda(), gen(5))
    assert y_gpu.device.type == "cuda"
    # identical params; results differ only by rounding (interpolation, 8-bit quantisation)
    assert (y_gpu.cpu() - y_cpu).abs().gt(1.5 / 255).float().mean() < 1e-3
