"""skylark's layers: one concept per file."""

from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, softmax
from .base import Layer
from .batchnorm import BatchNorm2d
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D

__all__ = ["AvgPool2D", "BatchNorm2d", "Conv2D", "Dense", "Dropout", "Flatten", "GlobalAvgPool2D",
           "Layer", "LeakyReLU", "MaxPool2D", "ReLU", "Sigmoid", "Softmax", "Tanh", "softmax"]
