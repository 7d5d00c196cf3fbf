"""Keras layers for what keras.layers cannot say directly (used by reference.kinds)."""

from __future__ import annotations

import keras
from keras import ops


class NegInfPadding2D(keras.layers.Layer):
    """Pad an NHWC map with -inf ((top, bottom, left, right)), for max-pooling with int padding:
    ZeroPadding2D would put a 0 in the window, which wins whenever the real values there are all
    negative."""

    def __init__(self, pads, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pads = tuple(int(p) for p in pads)

    def call(self, x):
        t, b, l, r = self.pads
        return ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=float("-inf"))

    def compute_output_shape(self, shape):
        t, b, l, r = self.pads
        n, h, w, c = shape
        return n, None if h is None else h + t + b, None if w is None else w + l + r, c

    def get_config(self):
        return {**super().get_config(), "pads": self.pads}
