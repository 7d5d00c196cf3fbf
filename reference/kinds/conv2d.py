"""conv2d: skylark.Conv2D (cross-correlation, OIHW weights, dilation, groups) in every framework.

How each framework says dilation and groups (measured on TF 2.21, Keras 3.15, torch 2.13, jax
0.10, CPU):

- torch: nn.Conv2d(dilation=, groups=) as is; for "same"/"valid", Conv2dTF (explicit F.pad with
  the pads resolved for the effective kernel d*(k-1)+1) passes both through to nn.Conv2d.
- raw TF: one tf.nn.conv2d call with `dilations` and the grouped kernel (kh, kw, C_in/groups, O)
  (TF groups by the kernel's input depth), TF's own "SAME"/"VALID" (its rule uses the effective
  kernel, as skylark's does) or explicit pads; strides > 1 with dilations > 1 work in this op.
  TF's CPU kernels compute the forward, but their input gradient (Conv2DBackpropInput) raises
  "Current CPU implementations do not yet support dilation rates larger than 1." or "Gradients
  for grouped convolutions are not supported on CPU." in float64, and in float32 too with
  explicit (int) padding: only the oneDNN kernels, used for float32 "SAME"/"VALID", have them.
  So a dilated or grouped conv runs the SAME call compiled with XLA (tf.function(jit_compile=
  True)), in both dtypes: the math is the op's, only the engine differs, and XLA has every
  gradient.
- Keras: keras.layers.Conv2D(dilation_rate=, groups=), Keras' "same" being TF's rule on every
  backend (on the TF backend Keras itself compiles a grouped conv with XLA, and runs a dilated
  one through tf.nn.convolution's space-to-batch path). Keras refuses strides > 1 together with
  dilation_rate > 1 ("`strides > 1` not supported in conjunction with `dilation_rate > 1`"), and
  so does tf.nn.convolution: that case is StridedDilatedConv2D (reference.runners.keras_layers), the
  stride-1 dilated conv on the explicitly padded input (ZeroPadding2D with the resolved pads),
  sampled every stride. Exact: output (i, j) of the strided conv IS output (i*sh, j*sw) of the
  stride-1 one. Its one kernel has Keras' shape, so reference.transfer's rule applies.
"""

from __future__ import annotations

import functools

import skylark as sk

from .base import Kind, padding_arg, pair
from .onnx_ops import channel_vector, onnx_pads, pad, window_taps


def _dilation(s) -> tuple[int, int]:
    return pair(s.get("dilation", (1, 1)))  # specs written before dilation existed: 1


def _groups(s) -> int:
    return int(s.get("groups", 1))


def _strided_and_dilated(s) -> bool:
    """Keras (and tf.nn.convolution) refuse this combination."""
    return max(pair(s["stride"])) > 1 and max(_dilation(s)) > 1


@functools.cache
def _xla_conv2d():
    """tf.nn.conv2d compiled with XLA: the dilated and grouped gradients TF's CPU kernels lack.
    (Traced once per configuration and input shape; TF logs a retracing warning, at most twice
    per process, when many configurations run in one process, as in the tests.)"""
    import tensorflow as tf

    return tf.function(lambda h, k, strides, padding, dilations: tf.nn.conv2d(
        h, k, strides, padding, dilations=dilations), jit_compile=True)


class Conv2d(Kind):
    """Spec: in_channels, out_channels, kernel_size [kh, kw], stride [sh, sw],
    padding ("valid" | "same" | [ph, pw]), dilation [dh, dw], groups, bias (bool)."""

    name = "conv2d"
    layer = sk.Conv2D
    input_rank = 3
    in_field = "in_channels"


    def f32_forward(self, s, g, batch):
        # each output sums its group's C_in/groups channels over the kh*kw taps
        kh, kw = s["kernel_size"]
        return s["in_channels"] // _groups(s) * kh * kw + int(s["bias"])

    def f32_input_grad(self, s):
        # each input pixel gathers from its group's O/groups output channels over the taps
        kh, kw = s["kernel_size"]
        return s["out_channels"] // _groups(s) * kh * kw

    def f32_weight_grad(self, s, g, batch):
        _, ho, wo = g.out_shape
        return batch * ho * wo

    def torch(self, s, g, plant=None):
        from torch import nn

        from ..runners.torch_layers import Conv2dTF

        args = (s["in_channels"], s["out_channels"], pair(s["kernel_size"]))
        kw = {"stride": pair(s["stride"]), "dilation": _dilation(s), "groups": _groups(s),
              "bias": s["bias"]}
        if isinstance(s["padding"], str):  # "valid"/"same": TF's rule, pads resolved for g
            pads = g.pads
            if plant == "torch_same_symmetric":  # planted (tests only): torch-style symmetric
                t, b, l, r = pads
                pads = ((t + b) // 2 + (t + b) % 2,) * 2 + ((l + r) // 2 + (l + r) % 2,) * 2
            return Conv2dTF(*args, pads=pads, **kw)
        return nn.Conv2d(*args, padding=pair(s["padding"]), **kw)

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        pad = s["padding"]
        if isinstance(pad, str):
            pad = pad.upper()  # "VALID" / "SAME": TF defines the "same" rule skylark follows
        else:
            ph, pw = pad
            pad = [[0, 0], [ph, ph], [pw, pw], [0, 0]]
        conv = tf.nn.conv2d
        if _groups(s) > 1 or max(_dilation(s)) > 1:
            conv = _xla_conv2d()  # TF's CPU kernels lack these gradients (see the docstring)
        h = conv(h, v["kernel"], [1, *s["stride"], 1], pad, dilations=[1, *_dilation(s), 1])
        return tf.nn.bias_add(h, v["bias"]) if s["bias"] else h

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..runners.keras_layers import StridedDilatedConv2D

        pad, pre, split = padding_arg(s["padding"]), [], _strided_and_dilated(s)
        if split or not isinstance(pad, str):  # explicit pads: int padding, or the split conv
            t, b, l, r = g.pads
            pre = [keras.layers.ZeroPadding2D(((t, b), (l, r)), name=f"l{g.index}_pad",
                                              data_format="channels_last", dtype=dtype)]
            pad = "valid"
        layer = StridedDilatedConv2D if split else keras.layers.Conv2D
        return [*pre, layer(
            s["out_channels"], pair(s["kernel_size"]), strides=pair(s["stride"]), padding=pad,
            dilation_rate=_dilation(s), groups=_groups(s), use_bias=s["bias"],
            data_format="channels_last", name=f"l{g.index}", dtype=dtype,
        )]

    def jax(self, s, g, h, p, run):
        from jax import lax

        t, b, l, r = g.pads  # "valid"/"same" (TF's rule) or int padding, resolved for g
        # NCHW/OIHW dimension numbers: skylark's layouts, nothing to transpose. HIGHEST: no
        # TF32/bfloat16 passes on accelerators (on CPU it is the default anyway).
        h = lax.conv_general_dilated(
            h, p["weight"], pair(s["stride"]), [(t, b), (l, r)], rhs_dilation=_dilation(s),
            feature_group_count=_groups(s), dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=lax.Precision.HIGHEST)
        return h + p["bias"][None, :, None, None] if s["bias"] else h

    def onnx(self, s, g, b, h):
        w = b.param(f"{g.name}.weight")
        bias = [b.param(f"{g.name}.bias")] if s["bias"] else []
        if not b.portable:
            return b.node("Conv", [h, w, *bias], kernel_shape=pair(s["kernel_size"]),
                          strides=pair(s["stride"]), dilations=_dilation(s), group=_groups(s),
                          pads=onnx_pads(g.pads))
        # float64 (no Conv kernel in onnxruntime's CPU provider): the taps stacked into
        # (N, C, K, Ho, Wo) patches, K = kh*kw row-major as in the OIHW weight, one Einsum
        (c, _, _), (o, ho, wo), grp = g.in_shape, g.out_shape, _groups(s)
        taps = window_taps(b, pad(b, h, g.pads), (ho, wo), pair(s["kernel_size"]),
                           pair(s["stride"]), _dilation(s))
        k = len(taps)
        patches = b.node("Concat", [b.node("Unsqueeze", [t, b.ints(2)]) for t in taps], axis=2)
        patches = b.node("Reshape", [patches, b.ints(0, grp, c // grp, k, ho, wo)])
        wk = b.node("Reshape", [w, b.ints(grp, o // grp, c // grp, k)])  # (O, I, kh, kw) split
        y = b.node("Einsum", [patches, wk], equation="ngckhw,gock->ngohw")
        y = b.node("Reshape", [y, b.ints(0, o, ho, wo)])
        return b.node("Add", [y, channel_vector(b, bias[0], o)]) if bias else y
