"""skylark: a from-scratch NumPy CNN whose every gradient is verified against the frameworks.

    import skylark as sk
    model = sk.skylark_cnn()                       # Conv3x3(8) -> MaxPool2 -> Dense, NCHW
    loss, dlogits = sk.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)                        # fills model.grads(), torch names
"""

__version__ = "0.1.0"

from .graph import INPUT, Graph
from .layers import (
    Add,
    AvgPool2D,
    BatchNorm2d,
    ChannelSlice,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    LeakyReLU,
    MaxPool2D,
    Multiply,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    softmax,
)
from .losses import softmax_cross_entropy
from .model import CheckpointError, CheckpointNotFoundError, Sequential, skylark_cnn
from .optim import SGD

__all__ = [
    "INPUT",
    "SGD",
    "Add",
    "AvgPool2D",
    "BatchNorm2d",
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
    "Layer",
    "LeakyReLU",
    "MaxPool2D",
    "Multiply",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "__version__",
    "skylark_cnn",
    "softmax",
    "softmax_cross_entropy",
]
