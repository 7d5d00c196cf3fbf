"""skylark's layers: one concept per file."""

from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, softmax
from .activation_gated import GELU, SiLU
from .activation_hard import Hardsigmoid, Hardswish, ReLU6
from .adaptive_pool import AdaptiveAvgPool2d
from .base import Layer
from .batchnorm import BatchNorm2d
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .identity import Identity
from .merge import Add, ChannelSlice, Concat, Multiply
from .pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .rescaling import Rescaling
from .shuffle import ChannelShuffle
from .stochastic_depth import StochasticDepth
from .zeropad import ZeroPad2d

__all__ = ["GELU", "AdaptiveAvgPool2d", "Add", "AvgPool2D", "BatchNorm2d", "ChannelShuffle",
           "ChannelSlice", "Concat", "Conv2D", "Dense", "Dropout", "Flatten", "GlobalAvgPool2D",
           "Hardsigmoid", "Hardswish", "Identity", "Layer", "LeakyReLU", "MaxPool2D", "Multiply",
           "ReLU", "ReLU6", "Rescaling", "SiLU", "Sigmoid", "Softmax", "StochasticDepth", "Tanh",
           "ZeroPad2d", "softmax"]
