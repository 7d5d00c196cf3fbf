"""identity: skylark.Identity (y = x) in every framework: nn.Identity, tf.identity,
keras.layers.Identity, the array itself in JAX, ONNX Identity. Exact, no budget; a flat input
keeps its flatten order (Kind.flat_source)."""

from __future__ import annotations

import skylark as sk

from .base import Kind


class Identity(Kind):
    """Spec: no fields."""

    name = "identity"
    layer = sk.Identity

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.Identity()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.identity(h)

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Identity(name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        return h

    def onnx(self, s, g, b, h):
        return b.node("Identity", [h])
