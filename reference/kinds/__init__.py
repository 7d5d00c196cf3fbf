"""Every layer kind the references mirror, one module each; `KINDS` is the registry.

To add a kind: a skylark layer (with `config()`), a module here with its `Kind` subclass, an
entry in `_ALL` below, its parameter layout rule in reference.transfer if it has parameters,
and tests. Nothing else branches on the kind.
"""

from __future__ import annotations

from .activations import LeakyReLU, Sigmoid, Tanh
from .adaptiveavgpool2d import AdaptiveAvgPool2d
from .avgpool2d import AvgPool2d
from .base import FRAMEWORK_BUILDERS, Kind
from .batchnorm2d import BatchNorm2d
from .channelshuffle import ChannelShuffle
from .conv2d import Conv2d
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .gated import GELU, SiLU
from .globalavgpool2d import GlobalAvgPool2d
from .hard import Hardsigmoid, Hardswish, ReLU6
from .identity import Identity
from .maxpool2d import MaxPool2d
from .merge import Add, ChannelSlice, Concat, Multiply
from .relu import ReLU
from .rescaling import Rescaling
from .stochasticdepth import StochasticDepth
from .zeropad2d import ZeroPad2d

_ALL = (Conv2d(), MaxPool2d(), AvgPool2d(), GlobalAvgPool2d(), BatchNorm2d(), ReLU(), LeakyReLU(),
        Sigmoid(), Tanh(), Dropout(), Flatten(), Dense(), Add(), Concat(), Multiply(),
        ChannelSlice())
# the mobile nets' activations and pools (reference.kinds.hard, .gated, .adaptiveavgpool2d,
# .channelshuffle) and the identity
_ALL += (ReLU6(), Hardsigmoid(), Hardswish(), SiLU(), GELU(), AdaptiveAvgPool2d(),
         ChannelShuffle(), Identity())
# what imported models need (torchvision, Keras Applications, ONNX files): explicit zero
# padding, stochastic depth, a fixed per-channel affine map
_ALL += (ZeroPad2d(), StochasticDepth(), Rescaling())
KINDS: dict[str, Kind] = {k.name: k for k in _ALL}


def kind_of(layer, index: int = 0) -> Kind:
    """The kind of a skylark layer; ValueError for a layer no reference can mirror."""
    for k in _ALL:
        if type(layer) is k.layer:
            return k
    raise ValueError(f"the reference frameworks mirror only {tuple(KINDS)}. "
                     f"Received: layer {index} = {layer!r}")


def require_builders(framework: str, kinds=None) -> None:
    """RuntimeError naming every kind without a `framework` builder: a framework module calls
    this at import, so a kind added without its builder fails loudly, never silently dropped."""
    if framework not in FRAMEWORK_BUILDERS:
        raise ValueError(f"framework must be one of {FRAMEWORK_BUILDERS}. "
                         f"Received: {framework!r}")
    missing = [k.name for k in (kinds or KINDS).values()
               if getattr(type(k), framework) is getattr(Kind, framework)]
    if missing:
        raise RuntimeError(f"{framework}: no builder for layer kind(s) {missing}")


__all__ = ["KINDS", "Kind", "kind_of", "require_builders"]
