"""skylark's layers: one concept per file."""

from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, softmax
from .base import Layer
from .batchnorm import BatchNorm2d
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .merge import Add, ChannelSlice, Concat, Multiply
from .pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D

__all__ = ["Add", "AvgPool2D", "BatchNorm2d", "ChannelSlice", "Concat", "Conv2D", "Dense",
           "Dropout", "Flatten", "GlobalAvgPool2D", "Layer", "LeakyReLU", "MaxPool2D", "Multiply",
           "ReLU", "Sigmoid", "Softmax", "Tanh", "softmax"]
