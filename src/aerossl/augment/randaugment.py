"""Batched RandAugment with FixMatch's op list, every image drawing its own ops and magnitudes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from aerossl.augment import functional as AF
from aerossl.augment.base import (
    Augmentation,
    Params,
    check_batch,
    check_bool,
    check_int,
    check_number,
    register_augmentation,
)
from aerossl.errors import ConfigError, suggest

RANDAUGMENT_OPS: tuple[str, ...] = (
    "AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "Posterize",
    "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY",
)
"""Every op RandAugment knows (``ops`` may name any); sampled params ``ops`` index into this
tuple. A new op may go anywhere in it: ops are drawn by name from :data:`FIXMATCH_OPS` (or the
configured ``ops``), so adding one changes no seed's strong views."""

FIXMATCH_OPS: tuple[str, ...] = (
    "AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "Posterize",
    "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY",
)
"""FixMatch's op list, the default draw (``ops: null``). Frozen: changing it changes every
seed's strong views (pinned by a golden hash of a seeded draw in tests/test_augment.py)."""

MAX_ENHANCE = 0.95  # Brightness/Color/Contrast/Sharpness factor 1 ± 0.95·μ, i.e. [0.05, 1.95]
MAX_POSTERIZE = 4  # bits 8 − round(4·μ), i.e. 8..4
MAX_ROTATE = 30.0  # degrees
MAX_SHEAR = 0.3  # shear coefficient
MAX_TRANSLATE = 0.3  # fraction of width/height
GEOMETRIC_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})
_GEOMETRIC_IDS = torch.tensor(sorted(RANDAUGMENT_OPS.index(name) for name in GEOMETRIC_OPS))

ColourFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _enhance(fn: Callable[[Tensor, Tensor], Tensor]) -> ColourFn:
    """PIL enhance op with factor ``1 + sign·0.95·μ``."""
    return lambda x, mag, sign: fn(x, 1 + sign * MAX_ENHANCE * mag)


_COLOUR_OPS: dict[str, ColourFn] = {
    "AutoContrast": lambda x, mag, sign: AF.auto_contrast(x),
    "Brightness": _enhance(AF.brightness),
    "Color": _enhance(AF.color),
    "Contrast": _enhance(AF.contrast),
    "Equalize": lambda x, mag, sign: AF.equalize(x),
    "Posterize": lambda x, mag, sign: AF.posterize(x, 8 - torch.round(MAX_POSTERIZE * mag)),
    "Sharpness": _enhance(AF.sharpness),
    # invert where 255·x >= 256·(1 − μ): μ = 0 inverts nothing, μ = 1 everything (PIL's 256 − v)
    "Solarize": lambda x, mag, sign: AF.solarize(x, (1 - mag) * (256 / 255)),
}


def affine_matrices(op_names: Sequence[str], ops: Tensor, value: Tensor, h: int,
                    w: int) -> Tensor:
    """B×2×3 float64 maps (centred pixel coords, output → input) for the geometric ops.

    ``value = sign·μ`` in [−1, 1]; images whose op is not geometric get the identity.
    Rotate: angle 30°·value (``[[cos, −sin], [sin, cos]]``); ShearX/ShearY: coefficient
    0.3·value about the image centre; TranslateX/TranslateY: 0.3·value·W (resp. H) pixels.
    """
    theta = torch.zeros(len(ops), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    v = value.to(torch.float64)
    for op_id, name in enumerate(op_names):
        sel = ops == op_id
        if name not in GEOMETRIC_OPS or not bool(sel.any()):
            continue
        if name == "Rotate":
            a = torch.deg2rad(MAX_ROTATE * v[sel])
            cos, sin = a.cos(), a.sin()
            theta[sel] = torch.stack([torch.stack([cos, -sin, 0 * a], 1),
                                      torch.stack([sin, cos, 0 * a], 1)], 1)
        elif name == "ShearX":
            theta[sel, 0, 1] = MAX_SHEAR * v[sel]
        elif name == "ShearY":
            theta[sel, 1, 0] = MAX_SHEAR * v[sel]
        elif name == "TranslateX":
            theta[sel, 0, 2] = MAX_TRANSLATE * w * v[sel]
        else:  # TranslateY
            theta[sel, 1, 2] = MAX_TRANSLATE * h * v[sel]
    return theta


def _canonical_ops(ops: Sequence[str] | None) -> tuple[str, ...]:
    """Validate a RandAugment op list (case-insensitive names) into canonical names."""
    if ops is None:
        return FIXMATCH_OPS
    if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
        raise ConfigError(f"augmentation 'randaugment': parameter 'ops' must be a non-empty "
                          f"list of op names or null, got {ops!r}")
    by_lower = {name.lower(): name for name in RANDAUGMENT_OPS}
    names = []
    for op in ops:
        if not isinstance(op, str) or op.lower() not in by_lower:
            hint = suggest(op, RANDAUGMENT_OPS) if isinstance(op, str) else ""
            raise ConfigError(f"augmentation 'randaugment': unknown op {op!r} in 'ops'{hint} "
                              f"(available: {', '.join(RANDAUGMENT_OPS)})")
        names.append(by_lower[op.lower()])
    return tuple(names)


@register_augmentation("randaugment")
class RandAugment(Augmentation):
    """FixMatch-style RandAugment: each image draws ``n`` ops uniformly (with replacement) from
    ``ops`` (default: FixMatch's 14, ``FIXMATCH_OPS``) and applies them in order, each with its own
    magnitude fraction ``μ`` (uniform in [0, m/10] if ``random_magnitude`` else exactly m/10)
    and, for signed ops, its own random sign.

    Op ranges at μ = 1 (μ = 0 is the identity for every op with a magnitude):
    Brightness/Color/Contrast/Sharpness: PIL enhance factor ``1 ± 0.95·μ`` (∈ [0.05, 1.95]);
    Posterize: ``8 − round(4·μ)`` bits (8..4); Solarize: invert levels ``>= 256·(1 − μ)``;
    Rotate: ±30°·μ; ShearX/ShearY: ±0.3·μ; TranslateX/TranslateY: ±0.3·μ of the width/height.
    AutoContrast, Equalize (per image and channel) and Identity ignore μ. Color blends with
    the grey image: ITU-R 601 luma for C == 3, the channel mean for other C (identity for
    C == 1). Geometric ops run as one batched ``affine_grid``/``grid_sample`` (bilinear,
    reflection padding) per step on the images that drew one; shears are about the centre.

    Params: ``ops`` (B×n int64, indices into ``RANDAUGMENT_OPS``), ``magnitude`` (B×n float,
    μ in [0, 1]), ``sign`` (B×n float, ±1).
    """

    def __init__(self, n: int = 2, m: float = 10, random_magnitude: bool = True,
                 ops: Sequence[str] | None = None) -> None:
        self.n = check_int("randaugment", "n", n, 0)
        self.m = check_number("randaugment", "m", m, 0.0, 10.0)
        self.random_magnitude = check_bool("randaugment", "random_magnitude", random_magnitude)
        self.ops = _canonical_ops(ops)
        self._ids = torch.tensor([RANDAUGMENT_OPS.index(name) for name in self.ops])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Params:
        """Per image and step: op uniform over ``ops``, μ, and a sign uniform in {−1, +1}."""
        shape = (batch_size, self.n)
        ops = self._ids[torch.randint(len(self.ops), shape, generator=generator)]
        if self.random_magnitude:
            magnitude = torch.rand(shape, generator=generator) * (self.m / 10)
        else:
            magnitude = torch.full(shape, self.m / 10)
        sign = torch.randint(2, shape, generator=generator).float() * 2 - 1
        return {"ops": ops, "magnitude": magnitude, "sign": sign}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Apply step by step; per step one affine warp plus one call per drawn colour op."""
        _, _, h, w = check_batch(x)
        ops, mag, sign = (params[k].cpu() for k in ("ops", "magnitude", "sign"))
        dev = x.device
        out = x.clone()
        for step in range(ops.shape[1]):
            op, mu, sg = ops[:, step], mag[:, step].float(), sign[:, step].float()
            sel = torch.isin(op, _GEOMETRIC_IDS)
            if bool(sel.any()):
                theta = affine_matrices(RANDAUGMENT_OPS, op[sel], (mu * sg)[sel], h, w)
                idx = AF.move(sel.nonzero().flatten(), dev)
                out[idx] = AF.affine(out[idx], theta)
            for op_id in op.unique().tolist():
                fn = _COLOUR_OPS.get(RANDAUGMENT_OPS[op_id])
                if fn is None:  # Identity or geometric
                    continue
                sel = op == op_id
                idx = AF.move(sel.nonzero().flatten(), dev)
                out[idx] = fn(out[idx], AF.move(mu[sel], dev), AF.move(sg[sel], dev))
        return out
