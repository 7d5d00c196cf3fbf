"""globalavgpool2d: skylark.GlobalAvgPool2D ((N, C, H, W) -> (N, C), the mean over H and W).

torch: nn.AdaptiveAvgPool2d(1) then nn.Flatten (torch's idiom); raw TF: tf.reduce_mean over the
NHWC map's H and W axes; Keras: GlobalAveragePooling2D. The (N, C) output has no flatten order
to convert: channel c is feature c in every framework.
"""

from __future__ import annotations

import skylark as sk

from .base import Kind


class GlobalAvgPool2d(Kind):
    """Spec: no fields."""

    name = "globalavgpool2d"
    layer = sk.GlobalAvgPool2D
    input_rank = 3

    def flat_source(self, in_shape, out_shape, in_source):
        return None  # one feature per channel, in channel order everywhere

    def f32_forward(self, s, g, batch):
        _, h, w = g.in_shape
        return h * w  # the mean: an H*W-term sum (the division: one rounding, K_SAFETY)

    def f32_input_grad(self, s):
        return 1  # no sum, but dy / (H*W) is rounded once

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.reduce_mean(h, axis=[1, 2])

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.GlobalAveragePooling2D(data_format="channels_last",
                                                    name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        return h.mean(axis=(2, 3))

    def onnx(self, s, g, b, h):
        if b.portable:  # float64: no GlobalAveragePool kernel in onnxruntime's CPU provider
            return b.node("ReduceMean", [h], axes=[2, 3], keepdims=0)
        return b.node("Flatten", [b.node("GlobalAveragePool", [h])], axis=1)
