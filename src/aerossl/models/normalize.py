"""The network the engine trains: per-channel normalisation in front of a classifier.

Inputs are float images in [0, 1] (uint8 / 255); normalisation lives inside the model so a
saved or exported model takes raw images and needs no separate preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalized(nn.Module):
    """``backbone((x - mean) / std)``, exposing the backbone's features and head.

    ``entry`` (0: images) makes the network start at that unit of the backbone's feature path:
    its inputs are then the cached outputs of the units before (the view bank), not images. It
    is not part of the saved state: a loaded network always takes images.
    """

    entry: int = 0

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    @property
    def head(self) -> nn.Linear:
        """The classifier layer."""
        return self.backbone.head

    @property
    def num_features(self) -> int:
        """Width of the feature vector before the head."""
        return self.backbone.num_features

    def normalize(self, x: Tensor) -> Tensor:
        """Standardise each channel."""
        return (x - self.mean) / self.std

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features of [0, 1] images (or of bank inputs when ``entry`` is set)."""
        if self.entry:
            return self.backbone.forward_from(x, self.entry)
        return self.backbone.forward_features(self.normalize(x))

    def forward_bottom(self, x: Tensor, stop: int) -> Tensor:
        """The input of feature unit ``stop`` for [0, 1] images: what the view bank caches."""
        return self.backbone.forward_to(self.normalize(x), stop)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class logits of pooled features (``forward(x) == forward_head(forward_features(x))``)."""
        return self.backbone.forward_head(features)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of [0, 1] images (or of bank inputs when ``entry`` is set)."""
        if self.entry:
            return self.backbone.forward_head(self.backbone.forward_from(x, self.entry))
        return self.backbone(self.normalize(x))
