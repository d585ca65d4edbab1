"""Batched, seedable augmentations for B×C×H×W image tensors in [0, 1] (any C, any device).

Build pipelines from config with ``build_pipeline(["flip", "rot90", {"name": "crop"}])``;
every op (and ``Compose``) has ``sample(batch_size, generator)`` → params, ``apply(x, params)``
and ``op(x, generator)``. New ops register with ``@register_augmentation("name")``.
"""

from aerossl.augment.base import (
    AUGMENTATIONS,
    Augmentation,
    Compose,
    Params,
    build_pipeline,
    create_augmentation,
    register_augmentation,
)
from aerossl.augment.contrastive import ColorJitter, GaussianBlur, RandomGrayscale, ResizedCrop
from aerossl.augment.ops import Crop, Cutout, Flip, Rot90
from aerossl.augment.randaugment import FIXMATCH_OPS, RANDAUGMENT_OPS, RandAugment

__all__ = [
    "AUGMENTATIONS",
    "FIXMATCH_OPS",
    "RANDAUGMENT_OPS",
    "Augmentation",
    "ColorJitter",
    "Compose",
    "Crop",
    "Cutout",
    "Flip",
    "GaussianBlur",
    "Params",
    "RandAugment",
    "RandomGrayscale",
    "ResizedCrop",
    "Rot90",
    "build_pipeline",
    "create_augmentation",
    "register_augmentation",
]
