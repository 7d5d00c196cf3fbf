"""conv2d: skylark.Conv2D (cross-correlation, OIHW weights) in every framework."""

from __future__ import annotations

import skylark as sk

from .base import Kind, padding_arg, pair


class Conv2d(Kind):
    """Spec: in_channels, out_channels, kernel_size [kh, kw], stride [sh, sw],
    padding ("valid" | "same" | [ph, pw]), bias (bool)."""

    name = "conv2d"
    layer = sk.Conv2D
    input_rank = 3

    def validate(self, s, in_shape):
        super().validate(s, in_shape)
        if in_shape[0] != s["in_channels"]:
            raise ValueError(f"conv2d expects {s['in_channels']} channels. "
                             f"Received: input shape {in_shape}")

    def f32_forward(self, s, g, batch):
        kh, kw = s["kernel_size"]
        return s["in_channels"] * kh * kw + int(s["bias"])

    def f32_input_grad(self, s):
        kh, kw = s["kernel_size"]
        return s["out_channels"] * kh * kw

    def f32_weight_grad(self, s, g, batch):
        _, ho, wo = g.out_shape
        return batch * ho * wo

    def torch(self, s, g, plant=None):
        from torch import nn

        from ..torch_layers import Conv2dTF

        args = (s["in_channels"], s["out_channels"], pair(s["kernel_size"]))
        kw = {"stride": pair(s["stride"]), "bias": s["bias"]}
        if isinstance(s["padding"], str):  # "valid"/"same": TF's rule, pads resolved for g
            return Conv2dTF(*args, pads=g.pads, **kw)
        return nn.Conv2d(*args, padding=pair(s["padding"]), **kw)

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        pad = s["padding"]
        if isinstance(pad, str):
            pad = pad.upper()  # "VALID" / "SAME": TF defines the "same" rule skylark follows
        else:
            ph, pw = pad
            pad = [[0, 0], [ph, ph], [pw, pw], [0, 0]]
        h = tf.nn.conv2d(h, v["kernel"], [1, *s["stride"], 1], pad)
        return tf.nn.bias_add(h, v["bias"]) if s["bias"] else h

    def keras(self, s, g, dtype, plant=None):
        import keras

        pad, pre = padding_arg(s["padding"]), []
        if not isinstance(pad, str):
            ph, pw = pad
            pre = [keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=f"l{g.index}_pad",
                                              data_format="channels_last", dtype=dtype)]
            pad = "valid"
        return [*pre, keras.layers.Conv2D(
            s["out_channels"], pair(s["kernel_size"]), strides=pair(s["stride"]), padding=pad,
            use_bias=s["bias"], data_format="channels_last", name=f"l{g.index}", dtype=dtype,
        )]
