"""WideResNet as used by FixMatch (WRN-28-2 by default)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aerossl.errors import ConfigError
from aerossl.models.pool import global_avg_pool
from aerossl.models.registry import (
    Classifier,
    check_dropout,
    check_momentum,
    check_positive_int,
    init_conv_bn,
    register_model,
)

__all__ = ["WideResNet"]

_SLOPE = 0.1  # LeakyReLU negative slope


class _PreActBlock(nn.Module):
    """Pre-activation basic block: BN-LReLU-conv3x3-BN-LReLU-(dropout)-conv3x3 + shortcut.

    As in the FixMatch reference: the shortcut takes the raw input, or the activated input when
    ``activate_before_residual``; a 1x1 conv projects it when the width or stride changes.
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        stride: int,
        dropout: float,
        bn_momentum: float,
        activate_before_residual: bool,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=bn_momentum)
        self.act1 = nn.LeakyReLU(_SLOPE, inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=bn_momentum)
        self.act2 = nn.LeakyReLU(_SLOPE, inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.activate_before_residual = activate_before_residual
        self.shortcut: nn.Module | None = None
        if in_planes != out_planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.act1(self.bn1(x))
        residual = act if self.activate_before_residual else x
        if self.shortcut is not None:
            residual = self.shortcut(residual)
        out = self.act2(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + residual


@register_model("wrn")
class WideResNet(Classifier):
    """WideResNet-``depth``-``widen_factor`` (FixMatch variant, CIFAR-style 3x3 stem).

    Widths 16, 16k, 32k, 64k (k = ``widen_factor``), strides 1, 2, 2, final BN + LeakyReLU(0.1)
    and global average pooling, so any input >= 8 px works. ``dropout`` is applied inside each
    block between the two convolutions; ``bn_momentum=0.001`` is TF's decay 0.999.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        depth: int = 28,
        widen_factor: int = 2,
        dropout: float = 0.0,
        bn_momentum: float = 0.001,
    ) -> None:
        super().__init__()
        check_positive_int("wrn", "widen_factor", widen_factor)
        check_positive_int("wrn", "depth", depth)
        dropout = check_dropout("wrn", dropout)
        bn_momentum = check_momentum("wrn", bn_momentum)
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"model 'wrn': depth must be 6n + 4 with n >= 1, got {depth}")
        blocks_per_group = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]

        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        groups: list[nn.Module] = []
        for i, stride in enumerate((1, 2, 2)):
            layers = [
                _PreActBlock(
                    widths[i] if j == 0 else widths[i + 1],
                    widths[i + 1],
                    stride if j == 0 else 1,
                    dropout,
                    bn_momentum,
                    activate_before_residual=(i == 0),
                )
                for j in range(blocks_per_group)
            ]
            groups.append(nn.Sequential(*layers))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(widths[3], momentum=bn_momentum)
        self.act = nn.LeakyReLU(_SLOPE, inplace=True)

        init_conv_bn(self, "leaky_relu")
        self.build_head(widths[3], num_classes)

    def init_head(self, head: nn.Linear) -> None:
        """Xavier-normal weight, zero bias (FixMatch reference)."""
        nn.init.xavier_normal_(head.weight)
        nn.init.zeros_(head.bias)

    def feature_units(self) -> list[nn.Module]:
        """Stem, block1, block2, and block3 with the final batch norm and activation."""
        return [self.stem, self.block1, self.block2, nn.Sequential(self.block3, self.bn, self.act)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features ``(B, 64 * widen_factor)``."""
        x = self.block3(self.block2(self.block1(self.stem(x))))
        x = self.act(self.bn(x))
        return global_avg_pool(x)
