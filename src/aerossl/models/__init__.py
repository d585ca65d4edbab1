"""Model zoo: ``create_model(name, num_classes, in_channels, **kwargs)`` and the registry.

Importing this package imports every model module, which fills ``MODELS`` via
``@register_model``.
"""

from aerossl.models.cnn import SmallCNN
from aerossl.models.efficientnet import EfficientNetLite
from aerossl.models.registry import (
    MODELS,
    Classifier,
    create_model,
    model_names,
    model_params,
    register_model,
)
from aerossl.models.resnet import ResNet, resnet18
from aerossl.models.wrn import WideResNet

__all__ = [
    "MODELS",
    "Classifier",
    "EfficientNetLite",
    "ResNet",
    "SmallCNN",
    "WideResNet",
    "create_model",
    "model_names",
    "model_params",
    "register_model",
    "resnet18",
]
