"""Rescaling: a fixed affine map per channel, y = x * scale + offset, like Keras' `Rescaling`
(and what a Keras `Normalization` layer becomes once its statistics are known: scale =
1 / max(sqrt(var), eps), offset = -mean * scale)."""

from __future__ import annotations

import math

import numpy as np

from .base import Layer, check_grad, check_input


def _check_constant(value, name: str):
    """A finite number, or a non-empty list of them (one per channel); returned as given
    (float or list of floats) for the config."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, (int, float, np.integer, np.floating))
                            and not isinstance(v, bool) and math.isfinite(v) for v in items):
        raise ValueError(f"{name} must be a finite number or a list of them, one per channel. "
                         f"Received: {name}={value!r}")
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return float(value)


class Rescaling(Layer):
    """y = x * scale + offset: `scale` and `offset` each a number (every element) or a list of
    C numbers (channel c of an (N, C, H, W) map, broadcast over H and W). Constants of the
    config, cast to the input's dtype: no parameters, nothing trained, no gradient of their
    own. backward: dx = dy * scale. The product is rounded before the sum, as Keras computes
    `inputs * scale + offset`.

    Any input shape (N, ...) when both are numbers; a list needs an (N, C, H, W) input with C
    equal to its length (two lists: the same length).
    """

    kind = "rescaling"

    def __init__(self, scale, offset=0.0) -> None:
        super().__init__()
        self.scale = _check_constant(scale, "scale")
        self.offset = _check_constant(offset, "offset")
        lengths = {len(v) for v in (self.scale, self.offset) if isinstance(v, list)}
        if len(lengths) > 1:
            raise ValueError(f"scale and offset must have one entry per channel each. "
                             f"Received: scale={scale!r}, offset={offset!r}")
        self.channels = lengths.pop() if lengths else None
        self._shape = None

    def __repr__(self) -> str:
        return f"Rescaling(scale={self.scale!r}, offset={self.offset!r})"

    def config(self) -> dict:
        return {"scale": self.scale, "offset": self.offset}

    def constants(self, dtype, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) as arrays of `dtype` that broadcast over an input of rank `ndim`:
        (C, 1, 1) per channel of an NCHW map, () for a number."""
        def shaped(v):
            a = np.asarray(v, dtype)
            return a.reshape(-1, *(1,) * (ndim - 2)) if a.ndim else a

        return shaped(self.scale), shaped(self.offset)

    def output_shape(self, input_shape):
        """The input's shape; ValueError when a per-channel list does not fit it."""
        if self.channels is not None and (len(input_shape) != 3
                                          or input_shape[0] != self.channels):
            raise ValueError(f"Rescaling with {self.channels} per-channel constants needs a "
                             f"({self.channels}, H, W) input. Received: input shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        x = check_input(x, max(x.ndim, 2), "Rescaling", None)
        self.output_shape(x.shape[1:])
        self._shape = x.shape
        scale, offset = self.constants(x.dtype, x.ndim)
        return x * scale + offset

    def backward(self, dy: np.ndarray) -> np.ndarray:
        shape = self._need_cache(self._shape)
        dy = check_grad(dy, shape, "Rescaling")
        return dy * self.constants(dy.dtype, dy.ndim)[0]
