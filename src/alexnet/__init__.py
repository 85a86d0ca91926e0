"""AlexNet as Krizhevsky, Sutskever and Hinton (2012) describe it, on PyTorch."""

from alexnet.layers import LocalResponseNorm
from alexnet.model import AlexNet, AlexNetConfig
from alexnet.registry import create_model, list_models
from alexnet.weights import from_torchvision

__version__ = "0.1.0"

__all__ = [
    "AlexNet",
    "AlexNetConfig",
    "LocalResponseNorm",
    "create_model",
    "from_torchvision",
    "list_models",
]
