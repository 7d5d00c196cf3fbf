"""add, concat, multiply (several inputs) and channelslice: how a graph joins and splits tensors.

The channel axis is axis 1 in torch, JAX and ONNX (NCHW) and the LAST axis in TF and Keras
(NHWC): a concatenation, a slice or a squeeze-excite gate written for one layout on the other
is the classic porting bug (tests/test_traps.py plants each). A flat (N, F) input has its
features on the last axis everywhere. Joins of flattened maps are refused (Kind.validate_inputs).
"""

from __future__ import annotations

import skylark as sk

from .base import Kind


def _same(shapes, what: str) -> None:
    if len(set(shapes)) != 1:
        raise ValueError(f"{what} needs inputs of one shape. Received: shapes {list(shapes)}")


class Add(Kind):
    """Spec: no fields. Inputs: two or more tensors of one shape; their sum, left to right."""

    name = "add"
    layer = sk.Add
    multi_input = True

    def validate_inputs(self, s, in_shapes, in_sources):
        super().validate_inputs(s, in_shapes, in_sources)
        _same(in_shapes, "add")

    def f32_forward(self, s, g, batch):
        return len(g.in_shapes) - 1  # k - 1 additions, each one rounding

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import AddAfterReLU, AddN

        return AddAfterReLU() if plant == "torch_residual_after_relu" else AddN()

    def tf(self, s, g, h, v, run):
        out = h[0] + h[1]
        for t in h[2:]:
            out = out + t
        return out

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Add(name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        out = h[0] + h[1]
        for t in h[2:]:
            out = out + t
        return out

    def onnx(self, s, g, b, h):
        out = b.node("Add", [h[0], h[1]])
        for t in h[2:]:
            out = b.node("Add", [out, t])
        return out


class Concat(Kind):
    """Spec: no fields. Inputs: maps that agree but in their channels, joined along them:
    torch.cat(dim=1) on NCHW, axis -1 on NHWC (TF, Keras)."""

    name = "concat"
    layer = sk.Concat
    multi_input = True

    def validate_inputs(self, s, in_shapes, in_sources):
        super().validate_inputs(s, in_shapes, in_sources)
        _same([tuple(shape[1:]) for shape in in_shapes], "concat (but for the channels)")

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import Cat

        return Cat()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.concat(h, axis=-1)  # NHWC: the channels are last

    def keras(self, s, g, dtype, plant=None):
        import keras

        if plant == "keras_concat_nchw_memory":  # planted (tests only)
            from ..runners.keras_layers import ConcatNCHWMemory

            return [ConcatNCHWMemory(g.out_shape, name=f"l{g.index}", dtype=dtype)]
        return [keras.layers.Concatenate(axis=-1, name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp

        return jnp.concatenate(h, axis=1)  # NCHW

    def onnx(self, s, g, b, h):
        return b.node("Concat", list(h), axis=1)


class Multiply(Kind):
    """Spec: no fields. Inputs [x, gate]: x * gate, the gate broadcast where its size is 1:
    squeeze-excite's (C, 1, 1) gate over a (C, H, W) map, (1, 1, C) over (H, W, C) in NHWC.

    Budget: x and gate bring their own errors, each scaled by the other's magnitude, plus the
    product's rounding: n = n_x + n_gate + 1. Backward: dx = dy * gate (n + n_gate + 1) and
    dgate = the sum of dy * x over the broadcast axes (n + n_x + that many terms), bounded on
    absolute values."""

    name = "multiply"
    layer = sk.Multiply
    multi_input = True

    def validate_inputs(self, s, in_shapes, in_sources):
        super().validate_inputs(s, in_shapes, in_sources)
        x, gate = in_shapes
        if len(x) != len(gate) or any(gs not in (1, xs) for gs, xs in zip(gate, x, strict=True)):
            raise ValueError("multiply's gate must have x's size or 1 on each axis. "
                             f"Received: x {x}, gate {gate}")

    def f32_merge_n(self, ns):
        return sum(ns) + 1

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        import numpy as np

        d_x, d_gate = abs_layer.backward(g)
        x, gate = c.geometry.in_shapes
        terms = int(np.prod([a for a, b in zip(x, gate, strict=True) if b != a] or [1]))
        n_x, n_gate = c.n_ins
        return [d_x, d_gate], [c.n + n_gate + 1, c.n + n_x + terms], {}

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import Mul

        return Mul()

    def tf(self, s, g, h, v, run):
        return h[0] * h[1]

    def keras(self, s, g, dtype, plant=None):
        import keras

        if plant == "keras_se_gate_nchw":  # planted (tests only)
            from ..runners.keras_layers import GateNCHW

            return [GateNCHW(g.in_shapes[1][0], name=f"l{g.index}", dtype=dtype)]
        return [keras.layers.Multiply(name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        return h[0] * h[1]

    def onnx(self, s, g, b, h):
        return b.node("Mul", [h[0], h[1]])


class ChannelSlice(Kind):
    """Spec: start, stop. Channels start .. stop - 1: x[:, start:stop] on NCHW, x[..., a:b] on
    NHWC (and on a flat input's features, which are last everywhere)."""

    name = "channelslice"
    layer = sk.ChannelSlice

    def validate(self, s, in_shape):
        super().validate(s, in_shape)
        if in_shape[0] < s["stop"]:
            raise ValueError(f"channelslice to {s['stop']} needs at least {s['stop']} "
                             f"channels. Received: input shape {in_shape}")

    def flat_source(self, in_shape, out_shape, in_source):
        if in_source is not None:
            raise ValueError("channelslice of a flattened map cannot be mirrored (the flatten "
                             "order differs between frameworks): slice before the flatten. "
                             f"Received: input shape {in_shape}")
        return None

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import ChannelSlice

        return ChannelSlice(s["start"], s["stop"])

    def tf(self, s, g, h, v, run):
        return h[..., s["start"]:s["stop"]]

    def keras(self, s, g, dtype, plant=None):
        from ..runners.keras_layers import ChannelSlice

        return [ChannelSlice(s["start"], s["stop"], name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        return h[:, s["start"]:s["stop"]]

    def onnx(self, s, g, b, h):
        return b.node("Slice", [h, b.ints(s["start"]), b.ints(s["stop"]), b.ints(1)])
