"""ResNet-18 and ResNet-50 with a small-input (3x3, stride 1) or ImageNet (7x7/2 + max-pool)
stem."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from aerossl.models.pool import global_avg_pool
from aerossl.models.registry import Classifier, init_conv_bn, register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]


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


class Bottleneck(nn.Module):
    """Bottleneck block, stride on the 3x3 convolution (torchvision's ResNet v1.5 layout:
    conv1/bn1/conv2/bn2/conv3/bn3/downsample)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
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
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock,
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
                seq.append(block(in_planes, width, stride if j == 0 else 1))
                in_planes = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*seq))

        init_conv_bn(self)
        if zero_init_residual:  # each block starts as the identity
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
        self.build_head(widths[-1] * block.expansion, num_classes)

    def map_foreign_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision's and timm's ResNet layout: ``conv1``/``bn1`` are ``stem.conv``/
        ``stem.bn`` here and ``fc`` is ``head`` (the ``layerN`` keys are the same)."""
        top = {"conv1": "stem.conv", "bn1": "stem.bn", "fc": "head"}
        out = {}
        for key, value in state.items():
            first, _, rest = key.partition(".")
            out[f"{top[first]}.{rest}" if first in top else key] = value
        return out

    def feature_units(self) -> list[nn.Module]:
        """Stem, layer1..layer4."""
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features ``(B, 512)`` (ResNet-50: 2048)."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return global_avg_pool(x)


@register_model("resnet18")
def resnet18(
    num_classes: int,
    in_channels: int = 3,
    small_input: bool = True,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-18 ([2, 2, 2, 2] BasicBlocks); ``small_input`` selects the 3x3 stride-1 stem."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, small_input, zero_init_residual)


@register_model("resnet50")
def resnet50(
    num_classes: int,
    in_channels: int = 3,
    small_input: bool = False,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-50 ([3, 4, 6, 3] Bottlenecks, v1.5); the ImageNet stem by default, so
    torchvision's and timm's weights load with ``model.init``."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels, small_input, zero_init_residual,
                  Bottleneck)
