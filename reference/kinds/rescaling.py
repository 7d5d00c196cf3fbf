"""rescaling: skylark.Rescaling (y = x * scale + offset, each a number or one per channel;
constants of the spec, not parameters) in every framework, the product rounded before the sum
in each:

- torch: torch_layers.Rescale, x * scale + offset with the constants as tensors of x's dtype,
  (C, 1, 1) per channel.
- Keras: keras.layers.Rescaling, channels_last: a (C,) list broadcasts over the last axis as
  it comes (its channels_first reshape is for the scale only, and unused here). The constants
  are given as numpy arrays of the layer's dtype, not as Python floats: on the TensorFlow
  backend Keras casts a Python float to float64 through float32 (0.1 becomes 0.10000000149),
  1.5e-8 relative off in float64, above the 1e-10 bar (tests/test_rescaling.py keeps the stock
  behaviour in view).
- raw TF (NHWC: (C,) broadcasts on the last axis), raw JAX (NCHW: (C, 1, 1)), ONNX (Mul, Add
  with (1, C, 1, 1) constants, both dtypes).

Budget: y = x * s + o rounds twice, each within eps32 / 2 * M with M = |x| |s| + |o|; a fused
multiply-add (XLA may fuse them) rounds once. Two implementations are thus within
1.5 eps32 * M <= K_SAFETY * 1 * eps32 * M: the forward adds 1 to the count, and an error
already in x reaches y times |s|, within M's bound. The input gradient dy * s is one rounding:
1 more.
"""

from __future__ import annotations

import numpy as np

import skylark as sk

from .base import Kind


def _constants(s, dtype, shape):
    """(scale, offset) as numpy arrays of `dtype` shaped `shape` (per channel) or ()."""
    def one(v):
        a = np.asarray(v, np.float64).astype(dtype)  # one rounding, to nearest
        return a.reshape(shape) if a.ndim else a

    return one(s["scale"]), one(s["offset"])


class Rescaling(Kind):
    """Spec: scale, offset (each a number or a list of C numbers)."""

    name = "rescaling"
    layer = sk.Rescaling

    def f32_forward(self, s, g, batch):
        return 1

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        scale, offset = real_layer.constants(np.float64, a.ndim)
        return a * np.abs(scale) + np.abs(offset)

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        scale = real_layer.constants(np.float64, g.ndim)[0]
        return g * np.abs(scale), c.n + 1, {}

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import Rescale

        return Rescale(s["scale"], s["offset"])

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        scale, offset = _constants(s, h.dtype.as_numpy_dtype, (-1,))  # NHWC: the last axis
        return h * tf.constant(scale) + tf.constant(offset)

    def keras(self, s, g, dtype, plant=None):
        import keras

        if plant == "keras_rescaling_python_floats":  # planted (tests only): Keras' own cast
            return [keras.layers.Rescaling(s["scale"], s["offset"], name=f"l{g.index}",
                                           dtype=dtype)]
        scale, offset = _constants(s, dtype, (-1,))
        return [keras.layers.Rescaling(scale, offset, name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        scale, offset = _constants(s, h.dtype, (-1,) + (1,) * (h.ndim - 2))  # NCHW
        return h * scale + offset

    def onnx(self, s, g, b, h):
        rank = 1 + len(g.in_shape)
        scale, offset = _constants(s, b.dtype, (1, -1) + (1,) * (rank - 2))
        return b.node("Add", [b.node("Mul", [h, b.const(scale)]), b.const(offset)])
