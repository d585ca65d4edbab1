"""ResNet-18 with a small-input (3x3, stride 1) or ImageNet (7x7/2 + max-pool) stem."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from aerossl.models.registry import Classifier, init_conv_bn, register_model

__all__ = ["BasicBlock", "ResNet", "resnet18"]


class BasicBlock(nn.Module):
    """Post-activation basic block (torchvision layout: conv1/bn1/conv2/bn2/downsample)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(Classifier):
    """ResNet with BasicBlocks, widths 64-128-256-512 and global average pooling.

    Layer names match torchvision inside ``layer1..layer4``; its ``conv1``/``bn1`` are
    ``stem.conv``/``stem.bn`` here and ``fc`` is ``head``.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        num_classes: int,
        in_channels: int = 3,
        small_input: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if small_input:  # <= 64 px inputs: keep full resolution in layer1
            stem = OrderedDict(
                conv=nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
                bn=nn.BatchNorm2d(64),
                act=nn.ReLU(inplace=True),
            )
        else:  # ImageNet stem: /4 before layer1
            stem = OrderedDict(
                conv=nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
                bn=nn.BatchNorm2d(64),
                act=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(3, 2, 1),
            )
        self.stem = nn.Sequential(stem)
        widths = (64, 128, 256, 512)
        in_planes = 64
        for i, (width, blocks) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            seq = []
            for j in range(blocks):
                seq.append(BasicBlock(in_planes, width, stride if j == 0 else 1))
                in_planes = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*seq))

        init_conv_bn(self)
        if zero_init_residual:  # each block starts as the identity
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
        self.build_head(widths[-1] * BasicBlock.expansion, num_classes)

    def feature_units(self) -> list[nn.Module]:
        """Stem, layer1..layer4."""
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features ``(B, 512)``."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


@register_model("resnet18")
def resnet18(
    num_classes: int,
    in_channels: int = 3,
    small_input: bool = True,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-18 ([2, 2, 2, 2] BasicBlocks); ``small_input`` selects the 3x3 stride-1 stem."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, small_input, zero_init_residual)
