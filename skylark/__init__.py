"""skylark: a from-scratch NumPy CNN whose every gradient is verified against the frameworks.

    import skylark as sk
    model = sk.skylark_cnn()                       # Conv3x3(8) -> MaxPool2 -> Dense, NCHW
    loss, dlogits = sk.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)                        # fills model.grads(), torch names
"""

__version__ = "0.1.0"

from .graph import INPUT, Graph
from .layers import (
    GELU,
    AdaptiveAvgPool2d,
    Add,
    AvgPool2D,
    BatchNorm2d,
    ChannelShuffle,
    ChannelSlice,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Hardsigmoid,
    Hardswish,
    Identity,
    Layer,
    LeakyReLU,
    MaxPool2D,
    Multiply,
    ReLU,
    ReLU6,
    Rescaling,
    Sigmoid,
    SiLU,
    Softmax,
    StochasticDepth,
    Tanh,
    ZeroPad2d,
    softmax,
)
from .losses import softmax_cross_entropy
from .model import CheckpointError, CheckpointNotFoundError, Sequential, skylark_cnn
from .optim import SGD, Adam, AdamW, RMSprop

__all__ = [
    "GELU",
    "INPUT",
    "SGD",
    "Adam",
    "AdamW",
    "AdaptiveAvgPool2d",
    "Add",
    "AvgPool2D",
    "BatchNorm2d",
    "ChannelShuffle",
    "ChannelSlice",
    "CheckpointError",
    "CheckpointNotFoundError",
    "Concat",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2D",
    "Graph",
    "Hardsigmoid",
    "Hardswish",
    "Identity",
    "Layer",
    "LeakyReLU",
    "MaxPool2D",
    "Multiply",
    "RMSprop",
    "ReLU",
    "ReLU6",
    "Rescaling",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "StochasticDepth",
    "Tanh",
    "ZeroPad2d",
    "__version__",
    "skylark_cnn",
    "softmax",
    "softmax_cross_entropy",
]
