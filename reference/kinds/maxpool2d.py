"""maxpool2d: skylark.MaxPool2D (first maximum wins a tie, -inf padding, torch's dilation and
ceil_mode) in every framework.

How each framework says each option:

- torch: nn.MaxPool2d(kernel, stride, padding, dilation=, ceil_mode=) for int padding, so the
  output size of ceil_mode is torch's own. "same"/"valid": MaxPool2dTF (explicit -inf F.pad of
  TF's pads, computed on the dilated kernel, then nn.MaxPool2d unpadded with the dilation).
- raw TF: tf.nn.max_pool2d has no dilation (and tf.nn.pool allows one with stride 1 only), no
  explicit pads and no ceil_mode. Dilation 1: "SAME"/"VALID" are TF's own; int padding is
  tf.pad with -inf (ceil_mode's extra bottom/right rows and columns included: `g.pads`) and
  "VALID". A dilation: -inf padding, then a running maximum over the window's strided taps in
  row-major order, with tf.where and a strict `>`, which sends the gradient to the FIRST
  maximum exactly as torch does (a reduce_max over stacked taps would split a tie's gradient).
- Keras: MaxPooling2D for dilation 1 (after NegInfPadding2D for int padding, ceil_mode's extra
  rows included); with a dilation, which MaxPooling2D lacks, keras_layers.DilatedMaxPool2D: the
  same running maximum as raw TF, in keras.ops (ops.where), on every backend.
- raw JAX: lax.reduce_window(max) with -inf padding (ceil_mode's rows included), whose VJP is
  select-and-scatter (the first maximum); with a dilation, which that VJP lacks, the same running
  maximum over the strided taps as raw TF (jnp.where with a strict `>`).

Not expressed anywhere, and refused by skylark itself with a ValueError naming the option:
ceil_mode with string padding (TF's "same" already rounds up), and a window that covers only
padding (possible with a dilation; torch would output -inf there).
"""

from __future__ import annotations

import skylark as sk

from .base import Kind, ceil_div, pair
from .onnx_ops import onnx_pads


def _dilation(s) -> tuple[int, int]:
    return pair(s.get("dilation", (1, 1)))


class MaxPool2d(Kind):
    """Spec: kernel_size [kh, kw], stride [sh, sw], padding ("valid" | "same" | [ph, pw]),
    dilation [dh, dw], ceil_mode (bool)."""

    name = "maxpool2d"
    layer = sk.MaxPool2D
    input_rank = 3

    def f32_input_grad(self, s):
        # a pixel receives the gradient of every window it wins. Along one axis the windows with
        # a tap on it are at most k (one per tap) and at most ceil(span / stride) (the windows
        # whose span covers it): ceil(k/s) without a dilation.
        n = 1
        for k, st, d in zip(s["kernel_size"], s["stride"], _dilation(s), strict=True):
            n *= min(k, ceil_div(d * (k - 1) + 1, st))
        return n

    def torch(self, s, g, plant=None):
        from torch import nn

        from ..runners.torch_layers import MaxPool2dLastMax, MaxPool2dTF

        k, st, d = pair(s["kernel_size"]), pair(s["stride"]), _dilation(s)
        if plant == "pool_last_max":
            _, h, w = g.in_shape
            if k != st or any(g.pads) or h % k[0] or w % k[1] or d != (1, 1):
                raise ValueError("plant pool_last_max needs non-overlapping undilated unpadded "
                                 f"windows that tile the map. Received: {s} on {g.in_shape}")
            return MaxPool2dLastMax(k, st)
        if isinstance(s["padding"], str):
            return MaxPool2dTF(k, st, pads=g.pads, dilation=d)
        # torch's own int padding pads with -inf too, and its own ceil_mode sizes the output
        return nn.MaxPool2d(k, st, padding=pair(s["padding"]), dilation=d,
                            ceil_mode=bool(s.get("ceil_mode", False)))

    def tf(self, s, g, h, v, run):
        import numpy as np
        import tensorflow as tf

        pad = s["padding"]
        if isinstance(pad, str) and _dilation(s) == (1, 1):
            return tf.nn.max_pool2d(h, s["kernel_size"], s["stride"], pad.upper())
        # tf.nn.max_pool2d takes no explicit pads, and zero padding would win in an
        # all-negative window: pad with -inf first (ceil_mode's extra rows/columns included)
        t, b, l, r = g.pads
        if any(g.pads):
            h = tf.pad(h, [[0, 0], [t, b], [l, r], [0, 0]],
                       constant_values=tf.constant(-np.inf, h.dtype))
        if _dilation(s) == (1, 1):
            return tf.nn.max_pool2d(h, s["kernel_size"], s["stride"], "VALID")
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = (
            s["kernel_size"], s["stride"], _dilation(s), g.out_shape[1:])
        best = None
        for p in range(kh):  # row-major taps; the strict `>` keeps the FIRST maximum
            for q in range(kw):
                tap = h[:, p * dh : p * dh + (ho - 1) * sh + 1 : sh,
                        q * dw : q * dw + (wo - 1) * sw + 1 : sw, :]
                best = tap if best is None else tf.where(tap > best, tap, best)
        return best

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..runners.keras_layers import DilatedMaxPool2D, NegInfPadding2D

        if _dilation(s) != (1, 1):
            return [DilatedMaxPool2D(pair(s["kernel_size"]), pair(s["stride"]), g.pads,
                                     dilation=_dilation(s), name=f"l{g.index}", dtype=dtype)]
        pad, pre = s["padding"], []
        if not isinstance(pad, str):
            pre = [NegInfPadding2D(g.pads, name=f"l{g.index}_pad", dtype=dtype)]
            pad = "valid"
        return [*pre, keras.layers.MaxPooling2D(
            pair(s["kernel_size"]), strides=pair(s["stride"]), padding=pad,
            data_format="channels_last", name=f"l{g.index}", dtype=dtype,
        )]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp
        import numpy as np
        from jax import lax

        t, b, l, r = g.pads  # ceil_mode's extra bottom/right rows and columns included
        k, st, d = pair(s["kernel_size"]), pair(s["stride"]), _dilation(s)
        if d == (1, 1):
            # reduce_window pads with its init value, -inf. Its VJP is XLA's select-and-scatter
            # with `>=`, which keeps the FIRST maximum of a window (row-major), as torch does
            # (tests/test_pool.py checks it on tie-heavy inputs); a jnp.max over stacked taps
            # would split a tie's gradient instead.
            return lax.reduce_window(h, np.array(-np.inf, h.dtype), lax.max, (1, 1, *k),
                                     (1, 1, *st), ((0, 0), (0, 0), (t, b), (l, r)))
        # jax has no VJP for a dilated max window ("VJP not implemented for select_and_gather
        # (MaxPool) with window dilation"): a running maximum over the window's strided taps in
        # row-major order, with a strict `>` so the FIRST maximum keeps the gradient, as raw TF.
        h = jnp.pad(h, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-np.inf)
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = k, st, d, g.out_shape[1:]
        best = None
        for i in range(kh):
            for j in range(kw):
                tap = h[:, :, i * dh : i * dh + (ho - 1) * sh + 1 : sh,
                        j * dw : j * dw + (wo - 1) * sw + 1 : sw]
                best = tap if best is None else jnp.where(tap > best, tap, best)
        return best

    def onnx(self, s, g, b, h):
        # ONNX pads of a max-pool never win (onnxruntime skips them, like -inf padding);
        # ceil_mode is said as its extra bottom/right pads (in g.pads), as for TF and Keras
        return b.node("MaxPool", [h], kernel_shape=pair(s["kernel_size"]),
                      strides=pair(s["stride"]), dilations=_dilation(s), pads=onnx_pads(g.pads))
