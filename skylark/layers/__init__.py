"""skylark's layers: one concept per file."""

from .activation import ReLU, Softmax, softmax
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .flatten import Flatten
from .pool import MaxPool2D

__all__ = ["Conv2D", "Dense", "Flatten", "Layer", "MaxPool2D", "ReLU", "Softmax", "softmax"]
