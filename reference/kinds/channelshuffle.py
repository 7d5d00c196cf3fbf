"""channelshuffle: skylark.ChannelShuffle (ShuffleNet's shuffle of the channels among `groups`)
in every framework.

The recipe is about the channel axis: NCHW (torch, JAX, ONNX) reshapes (N, g, C/g, H, W),
swaps axes 1 and 2 and reshapes back; NHWC (raw TF, Keras) reshapes (N, H, W, g, C/g), swaps
the LAST two axes and reshapes back. Porting the NCHW code unchanged onto an NHWC tensor (its
reshape reads the memory as if the channels came first) mixes pixels and channels: that is the
planted trap "keras_shuffle_nchw" (reference.runners.runner.PLANTS, tests/test_traps.py).

- torch: nn.ChannelShuffle (exact; its backward is the inverse permutation, float64 included).
- raw TF: tf.reshape / tf.transpose on NHWC. Keras: its own Reshape, Permute, Reshape layers.
- JAX: reshape / swapaxes on NCHW. ONNX: Reshape, Transpose, Reshape (0 copies the batch).
A permutation: exact in every dtype, no budget.
"""

from __future__ import annotations

import skylark as sk

from .base import Kind


class ChannelShuffle(Kind):
    """Spec: groups."""

    name = "channelshuffle"
    layer = sk.ChannelShuffle
    input_rank = 3

    def validate(self, s, in_shape):
        super().validate(s, in_shape)
        self.build(s, "float32", 0).output_shape(in_shape)

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.ChannelShuffle(s["groups"])

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        (c, hh, ww), groups = g.in_shape, s["groups"]
        split = tf.reshape(h, [-1, hh, ww, groups, c // groups])  # NHWC: channels last
        return tf.reshape(tf.transpose(split, [0, 1, 2, 4, 3]), [-1, hh, ww, c])

    def keras(self, s, g, dtype, plant=None):
        import keras

        (c, hh, ww), groups = g.in_shape, s["groups"]
        name = f"l{g.index}"
        if plant == "keras_shuffle_nchw":  # planted (tests only): torch's NCHW code on NHWC
            return [keras.layers.Reshape((groups, c // groups, hh, ww), name=f"{name}_split",
                                         dtype=dtype),
                    keras.layers.Permute((2, 1, 3, 4), name=f"{name}_swap", dtype=dtype),
                    keras.layers.Reshape((hh, ww, c), name=name, dtype=dtype)]
        return [keras.layers.Reshape((hh, ww, groups, c // groups), name=f"{name}_split",
                                     dtype=dtype),
                keras.layers.Permute((1, 2, 4, 3), name=f"{name}_swap", dtype=dtype),
                keras.layers.Reshape((hh, ww, c), name=name, dtype=dtype)]

    def jax(self, s, g, h, p, run):
        (c, hh, ww), groups = g.in_shape, s["groups"]
        split = h.reshape(h.shape[0], groups, c // groups, hh, ww)  # NCHW
        return split.swapaxes(1, 2).reshape(h.shape[0], c, hh, ww)

    def onnx(self, s, g, b, h):
        (c, hh, ww), groups = g.in_shape, s["groups"]
        split = b.node("Reshape", [h, b.ints(0, groups, c // groups, hh, ww)])
        swapped = b.node("Transpose", [split], perm=[0, 2, 1, 3, 4])
        return b.node("Reshape", [swapped, b.ints(0, c, hh, ww)])
