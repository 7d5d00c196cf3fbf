"""Identity: y = x, like `torch.nn.Identity` (a placeholder node: a head removed, a skip)."""

from __future__ import annotations

import numpy as np

from .base import Layer, check_grad


class Identity(Layer):
    """y = x for an input of any shape (N, ...), returned as is (no copy, as torch); dx = dy,
    returned as is (skylark.Graph adds fan-out gradients out of place)."""

    kind = "identity"

    def __init__(self) -> None:
        super().__init__()
        self._shape = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        self._shape = x.shape
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return check_grad(dy, self._need_cache(self._shape), "Identity")

    def output_shape(self, input_shape):
        return tuple(input_shape)
