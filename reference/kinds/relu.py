"""relu: skylark.ReLU (the gradient at exactly 0 is 0, as in torch) in every framework."""

from __future__ import annotations

import skylark as sk

from .base import Kind


class ReLU(Kind):
    """Spec: no fields."""

    name = "relu"
    layer = sk.ReLU

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.ReLU()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.nn.relu(h)

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.ReLU(name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp

        # Not jnp.maximum(h, 0): its gradient splits a tie, so at exactly 0 it would pass half
        # of dy. The strict `>` gives 0 there, as torch and TF do.
        return jnp.where(h > 0, h, jnp.zeros_like(h))

    def onnx(self, s, g, b, h):
        return b.node("Relu", [h])
