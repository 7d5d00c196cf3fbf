"""Flatten: (N, C, H, W) -> (N, C*H*W), like `torch.nn.Flatten`."""

from __future__ import annotations

import math

import numpy as np

from .base import Layer, check_grad


class Flatten(Layer):
    """Row-major over (C, H, W): feature index = c*H*W + h*W + w.

    This is the trap of porting weights: Keras/TF flatten NHWC as (H, W, C), so the rows of the
    Dense weight that follows must be permuted when copied between the two (reference.transfer).
    """

    kind = "flatten"

    def __init__(self) -> None:
        super().__init__()
        self._shape = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"Flatten expects at least a 2-D input. Received: shape {x.shape}")
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        shape = self._need_cache(self._shape)
        dy = check_grad(dy, (shape[0], math.prod(shape[1:])), "Flatten")  # not np.prod: 2 us
        return dy.reshape(shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int]:
        return (int(np.prod(input_shape)),)
