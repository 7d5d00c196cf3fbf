"""maxpool2d: skylark.MaxPool2D (first maximum wins a tie, -inf padding) in every framework."""

from __future__ import annotations

import skylark as sk

from .base import Kind, ceil_div, pair


class MaxPool2d(Kind):
    """Spec: kernel_size [kh, kw], stride [sh, sw], padding ("valid" | "same" | [ph, pw])."""

    name = "maxpool2d"
    layer = sk.MaxPool2D
    input_rank = 3

    def f32_input_grad(self, s):
        # a pixel receives the gradient of every window it wins: at most this many
        (kh, kw), (sh, sw) = s["kernel_size"], s["stride"]
        return ceil_div(kh, sh) * ceil_div(kw, sw)

    def torch(self, s, g, plant=None):
        from torch import nn

        from ..torch_layers import MaxPool2dLastMax, MaxPool2dTF

        k, st = pair(s["kernel_size"]), pair(s["stride"])
        if plant == "pool_last_max":
            _, h, w = g.in_shape
            if k != st or any(g.pads) or h % k[0] or w % k[1]:
                raise ValueError("plant pool_last_max needs non-overlapping unpadded windows "
                                 f"that tile the map. Received: {s} on {g.in_shape}")
            return MaxPool2dLastMax(k, st)
        if isinstance(s["padding"], str):
            return MaxPool2dTF(k, st, pads=g.pads)
        # torch's own int padding pads with -inf too
        return nn.MaxPool2d(k, st, padding=pair(s["padding"]))

    def tf(self, s, g, h, v, run):
        import numpy as np
        import tensorflow as tf

        pad = s["padding"]
        if isinstance(pad, str):
            pad = pad.upper()
        else:
            # tf.nn.max_pool2d takes no explicit pads, and zero padding would win in an
            # all-negative window: pad with -inf first.
            t, b, l, r = g.pads
            neg_inf = tf.constant(-np.inf, h.dtype)
            h = tf.pad(h, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=neg_inf)
            pad = "VALID"
        return tf.nn.max_pool2d(h, s["kernel_size"], s["stride"], pad)

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..keras_layers import NegInfPadding2D

        pad, pre = s["padding"], []
        if not isinstance(pad, str):
            pre = [NegInfPadding2D(g.pads, name=f"l{g.index}_pad", dtype=dtype)]
            pad = "valid"
        return [*pre, keras.layers.MaxPooling2D(
            pair(s["kernel_size"]), strides=pair(s["stride"]), padding=pad,
            data_format="channels_last", name=f"l{g.index}", dtype=dtype,
        )]
