"""AlexNet as Krizhevsky, Sutskever and Hinton (2012) describe it, on PyTorch."""

from alexnet.core.version import __version__
from alexnet.data.preprocess import Preprocessing
from alexnet.models.alexnet import AlexNet, AlexNetConfig
from alexnet.models.checkpoint import load_network as load
from alexnet.models.record import ModelRecord
from alexnet.models.registry import create_model, list_models
from alexnet.models.weights import from_torchvision
from alexnet.nn.lrn import LocalResponseNorm

__all__ = [
    "AlexNet",
    "AlexNetConfig",
    "LocalResponseNorm",
    "ModelRecord",
    "Preprocessing",
    "__version__",
    "create_model",
    "from_torchvision",
    "list_models",
    "load",
]
