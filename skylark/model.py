"""Sequential (a Graph whose nodes run one after another) and the Skylark CNN."""

from __future__ import annotations

import numpy as np

from .checkpoint import (  # noqa: F401  (re-exported: the names other modules import from here)
    _EXTRA,
    _META_KEY,
    CheckpointError,
    CheckpointNotFoundError,
    _load,
    check_entry,
    read_checkpoint,
)
from .graph import Graph
from .layers import Conv2D, Dense, Flatten, Layer, MaxPool2D
from .layers.base import as_dtype


class Sequential(Graph):
    """Layers applied in order: the Graph whose node i, named "i", reads node i - 1.
    Parameters are named like torch's state_dict (`0.weight`, `3.bias`)."""

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(
                    f"Sequential takes skylark layers. Received: layer {i} = {layer!r}"
                )
            self.add(str(i), layer)

    def append(self, layer: Layer) -> Sequential:
        """Add `layer` at the end (torch's nn.Sequential.append); returns self."""
        self.add(str(len(self)), layer)
        return self


def skylark_cnn(
    input_shape: tuple[int, int, int] = (1, 28, 28),
    *,
    num_classes: int = 10,
    filters: int = 8,
    seed: int = 0,
    dtype="float32",
) -> Sequential:
    """The Skylark net: Conv2D(C, filters, 3, bias=False) -> MaxPool2D(2) -> Flatten -> Dense.

    Input (N, C, H, W); logits (N, num_classes) out (softmax lives in the loss). The Dense size
    follows the input: filters * ((H - 2) // 2) * ((W - 2) // 2), 8*13*13 = 1352 for 28x28.
    The Skylark net's own init (not torch's): conv N(0, 1)/9, dense N(0, 1)/fan_in, bias 0.
    """
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape is (C, H, W). Received: input_shape={input_shape!r}")
    dt = as_dtype(dtype)
    c = int(input_shape[0])
    conv = Conv2D(c, filters, 3, bias=False, dtype=dt)
    pool = MaxPool2D(2)
    feat = pool.output_shape(conv.output_shape(tuple(input_shape)))
    fan_in = int(np.prod(feat))
    dense = Dense(fan_in, num_classes, dtype=dt)
    rng = np.random.default_rng(seed)
    conv.weight[...] = rng.standard_normal(conv.weight.shape) / 9
    dense.weight[...] = rng.standard_normal(dense.weight.shape) / fan_in
    dense.bias[...] = 0
    return Sequential(conv, pool, Flatten(), dense)
