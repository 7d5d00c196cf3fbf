"""zeropad2d: skylark.ZeroPad2d (torch's nn.ZeroPad2d: padding (left, right, top, bottom))
in every framework: nn.ZeroPad2d, tf.pad, keras.layers.ZeroPadding2D(((top, bottom), (left,
right))) (H's pair first), jnp.pad, ONNX Pad (mode constant, value 0). Exact, no budget.

The geometry's pads (top, bottom, left, right) are reference.spec.zeropad_pads: torch's
documented order restated, not skylark's layer's `pads`, so a skylark that read its own list
in another order fails against every framework instead of lending them its mistake. Each
builder below reads those, never the spec's torch-ordered list, so a builder cannot swap W's
pair with H's.
"""

from __future__ import annotations

import skylark as sk

from .base import Kind


class ZeroPad2d(Kind):
    """Spec: padding [left, right, top, bottom] (torch's order)."""

    name = "zeropad2d"
    layer = sk.ZeroPad2d
    input_rank = 3

    def torch(self, s, g, plant=None):
        from torch import nn

        t, b, l, r = g.pads
        return nn.ZeroPad2d((l, r, t, b))

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        t, b, l, r = g.pads
        return tf.pad(h, [[0, 0], [t, b], [l, r], [0, 0]])  # NHWC

    def keras(self, s, g, dtype, plant=None):
        import keras

        t, b, l, r = g.pads
        if plant == "keras_zeropad_torch_order":  # planted (tests only): torch's pairs as is
            t, b, l, r = l, r, t, b
        return [keras.layers.ZeroPadding2D(((t, b), (l, r)), data_format="channels_last",
                                           name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp

        t, b, l, r = g.pads
        return jnp.pad(h, ((0, 0), (0, 0), (t, b), (l, r)))  # NCHW

    def onnx(self, s, g, b, h):
        # always a Pad node (onnx_ops.pad returns a zero pad's input itself); ONNX's pads:
        # the begins of N, C, H, W, then their ends
        t, bottom, l, r = g.pads
        return b.node("Pad", [h, b.ints(0, 0, t, l, 0, 0, bottom, r), b.const(0.0)],
                      mode="constant")
