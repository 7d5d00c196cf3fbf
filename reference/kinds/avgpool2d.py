"""avgpool2d: skylark.AvgPool2D (torch's count_include_pad for int padding, TF's "same": the
mean of the real cells only) in every framework.

How each framework says each option:

- torch: nn.AvgPool2d(kernel, stride, padding, count_include_pad=) for int padding, and
  nn.AvgPool2d unpadded for "valid". "same" puts the odd pixel bottom/right, which torch's
  symmetric padding cannot say: torch_layers.AvgPool2dTF (zero F.pad, each window's sum by
  F.avg_pool2d(divisor_override=1), divided by the count of real cells: exact).
- raw TF: tf.nn.avg_pool2d "SAME"/"VALID" are TF's own ("SAME" already averages the real cells
  only). Int padding: tf.pad with zeros, then "VALID" (count_include_pad=True: divided by
  kh*kw), or the sum of the window's strided taps divided by the count of real cells
  (count_include_pad=False: TF has no such option).
- Keras: AveragePooling2D with "same"/"valid", and ZeroPadding2D + AveragePooling2D("valid")
  for int padding with count_include_pad=True; keras_layers.RealCellsAvgPool2D (zero padding,
  window sum, divided by the count of real cells) for count_include_pad=False. One exception:
  Keras 3's torch backend (3.15) computes an asymmetric "same" average by padding with the
  EDGE values (mode "replicate") and averaging those too: 3 cells [8, 9, 9] give 8.667 where
  TF, JAX and torch's real-cell mean give 8.5 (keras-team/keras#18452, #19721; fixed upstream
  by keras PR #23233). On that backend only, and only for asymmetric "same" pads, the
  reference uses RealCellsAvgPool2D; tests/test_avgpool.py keeps the stock layer's error in
  view, so an upgrade that fixes it shows.
- raw JAX: lax.reduce_window(add) with zero padding, divided by kh*kw, or by the real cells of
  each window counted by the same window sum over a map of ones.
"""

from __future__ import annotations

import numpy as np

import skylark as sk

from .base import Kind, ceil_div, pair
from .onnx_ops import onnx_pads, pad, window_taps


def _real_cells(g, s):
    """(1, H_out, W_out, 1) numpy counts of the real cells of every window (NHWC)."""
    import numpy as np

    layer = sk.AvgPool2D(pair(s["kernel_size"]), pair(s["stride"]), pair(s["padding"]),
                         count_include_pad=False)
    return np.asarray(layer.divisor(g.in_shape[1:]), float)[None, :, :, None]


def keras_avg_same_is_stock(g) -> bool:
    """Whether Keras' own AveragePooling2D("same") gives TF's real-cell mean for these pads:
    always, except asymmetric pads on the torch backend (see the module docstring)."""
    import keras

    t, b, l, r = g.pads
    return keras.backend.backend() != "torch" or (t == b and l == r)


class AvgPool2d(Kind):
    """Spec: kernel_size [kh, kw], stride [sh, sw], padding ("valid" | "same" | [ph, pw]),
    count_include_pad (bool with int padding, None with a string)."""

    name = "avgpool2d"
    layer = sk.AvgPool2D
    input_rank = 3

    def f32_forward(self, s, g, batch):
        kh, kw = s["kernel_size"]
        return kh * kw  # the window's sum (the division is one more rounding: K_SAFETY)

    def f32_input_grad(self, s):
        # a pixel receives dy / divisor from every window that covers it: at most this many
        (kh, kw), (sh, sw) = s["kernel_size"], s["stride"]
        return ceil_div(kh, sh) * ceil_div(kw, sw)

    def torch(self, s, g, plant=None):
        from torch import nn

        from ..runners.torch_layers import AvgPool2dTF

        k, st, pad = pair(s["kernel_size"]), pair(s["stride"]), s["padding"]
        if pad == "same":
            return AvgPool2dTF(k, st, pads=g.pads)
        if pad == "valid":
            return nn.AvgPool2d(k, st)
        count_pad = s["count_include_pad"]
        if plant == "torch_avg_divisor":  # planted (tests only): the other border divisor
            count_pad = not count_pad
        return nn.AvgPool2d(k, st, padding=pair(pad), count_include_pad=count_pad)

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        k, st, pad = s["kernel_size"], s["stride"], s["padding"]
        if isinstance(pad, str):
            return tf.nn.avg_pool2d(h, k, st, pad.upper())
        t, b, l, r = g.pads
        h = tf.pad(h, [[0, 0], [t, b], [l, r], [0, 0]])
        if s["count_include_pad"]:
            return tf.nn.avg_pool2d(h, k, st, "VALID")
        (kh, kw), (sh, sw), (ho, wo) = k, st, g.out_shape[1:]
        total = None
        for p in range(kh):
            for q in range(kw):
                tap = h[:, p : p + (ho - 1) * sh + 1 : sh, q : q + (wo - 1) * sw + 1 : sw, :]
                total = tap if total is None else total + tap
        return total / tf.constant(_real_cells(g, s), h.dtype)

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..runners.keras_layers import RealCellsAvgPool2D

        k, st, pad = pair(s["kernel_size"]), pair(s["stride"]), s["padding"]
        name = f"l{g.index}"
        if (pad == "same" and not keras_avg_same_is_stock(g)) or (
                not isinstance(pad, str) and not s["count_include_pad"]):
            return [RealCellsAvgPool2D(k, st, g.pads, name=name, dtype=dtype)]
        pre = []
        if not isinstance(pad, str):
            ph, pw = pair(pad)
            pre = [keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=f"{name}_pad",
                                              data_format="channels_last", dtype=dtype)]
            pad = "valid"
        return [*pre, keras.layers.AveragePooling2D(k, strides=st, padding=pad, name=name,
                                                    data_format="channels_last", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp
        import numpy as np
        from jax import lax

        (kh, kw), st, (t, b, l, r) = pair(s["kernel_size"]), pair(s["stride"]), g.pads
        window, strides, pads = (1, 1, kh, kw), (1, 1, *st), ((0, 0), (0, 0), (t, b), (l, r))
        zero = np.array(0, h.dtype)
        total = lax.reduce_window(h, zero, lax.add, window, strides, pads)  # zero padding
        if s["padding"] == "valid" or (s["padding"] != "same" and s["count_include_pad"]):
            return total / (kh * kw)
        # "same" (TF's) or count_include_pad=False: the real cells of each window, counted by
        # the same window sum over a map of ones
        ones = jnp.ones((1, 1, *h.shape[2:]), h.dtype)
        return total / lax.reduce_window(ones, zero, lax.add, window, strides, pads)

    def onnx(self, s, g, b, h):
        k, st, pad_ = pair(s["kernel_size"]), pair(s["stride"]), s["padding"]
        if not b.portable:
            # "same" averages the real cells only (count_include_pad=0); int padding says it
            count = 0 if isinstance(pad_, str) else int(s["count_include_pad"])
            return b.node("AveragePool", [h], kernel_shape=k, strides=st,
                          pads=onnx_pads(g.pads), count_include_pad=count)
        # float64 (no AveragePool kernel in onnxruntime's CPU provider): zero padding, the sum
        # of the window's taps, divided by skylark's own divisor per output cell
        taps = window_taps(b, pad(b, h, g.pads), g.out_shape[1:], k, st)
        total = taps[0]
        for t in taps[1:]:
            total = b.node("Add", [total, t])
        layer = self.build(s, b.dtype, 0)
        divisor = np.broadcast_to(layer.divisor(g.in_shape[1:]), g.out_shape[1:])  # int: all
        return b.node("Div", [total, b.const(divisor[None, None])])
