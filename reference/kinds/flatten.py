"""flatten: skylark.Flatten (C, H, W order; Keras and TF flatten NHWC as H, W, C)."""

from __future__ import annotations

import skylark as sk

from .base import Kind


class Flatten(Kind):
    """Spec: no fields. The feature order of its output is the porting trap: the runners and
    reference.transfer convert it wherever a flat tensor crosses a framework boundary."""

    name = "flatten"
    layer = sk.Flatten

    def flat_source(self, in_shape, out_shape, in_source):
        return tuple(in_shape) if len(in_shape) == 3 else in_source

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.Flatten()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.reshape(h, [tf.shape(h)[0], -1])  # NHWC -> H, W, C feature order

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Flatten(data_format="channels_last", name=f"l{g.index}",
                                     dtype=dtype)]

    def jax(self, s, g, h, p, run):
        return h.reshape(h.shape[0], -1)  # NCHW row-major: skylark's C, H, W order

    def onnx(self, s, g, b, h):
        return b.node("Flatten", [h], axis=1)  # NCHW: the C, H, W order skylark uses
