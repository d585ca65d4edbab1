"""A small, fast VGG-style CNN for CPU runs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
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

__all__ = ["SmallCNN"]


def _conv_bn_relu(in_ch: int, out_ch: int, bn_momentum: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        nn.ReLU(inplace=True),
    )


@register_model("cnn")
class SmallCNN(Classifier):
    """Stages of ``convs_per_stage`` x (conv3x3-BN-ReLU), a 2x2 max-pool after every stage but
    the last, then global average pooling, ``dropout`` and the linear head.

    ``stem`` is the first conv-BN-ReLU (of stage 1); ``num_features == widths[-1]``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128, 256),
        convs_per_stage: int = 2,
        dropout: float = 0.0,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise ConfigError(f"model 'cnn': widths must be a non-empty list, got {widths!r}")
        widths = [check_positive_int("cnn", "widths[]", w) for w in widths]
        check_positive_int("cnn", "convs_per_stage", convs_per_stage)
        dropout = check_dropout("cnn", dropout)
        bn_momentum = check_momentum("cnn", bn_momentum)

        self.stem = _conv_bn_relu(in_channels, widths[0], bn_momentum)
        stages: list[nn.Module] = []
        prev = widths[0]
        for i, width in enumerate(widths):
            layers: list[nn.Module] = []
            for _ in range(convs_per_stage - 1 if i == 0 else convs_per_stage):
                layers.append(_conv_bn_relu(prev, width, bn_momentum))
                prev = width
            if i < len(widths) - 1:
                # ceil_mode keeps odd / tiny inputs working (same as floor for even sizes)
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)

        init_conv_bn(self)
        self.build_head(widths[-1], num_classes, dropout)

    def feature_units(self) -> list[nn.Module]:
        """Stem and the stages."""
        return [self.stem, *self.stages]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features ``(B, widths[-1])``."""
        x = self.stages(self.stem(x))
        return global_avg_pool(x)
