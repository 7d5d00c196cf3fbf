"""dropout: skylark.Dropout, with the mask supplied by the harness so every framework drops the
same elements (each framework's own random generator would make training incomparable)."""

from __future__ import annotations

import skylark as sk

from .base import Kind


class Dropout(Kind):
    """Spec: p. In training the runner hands every framework the same keep-mask (skylark
    layout, converted like an activation); in eval mode the layer is the identity."""

    name = "dropout"
    layer = sk.Dropout
    uses_mask = True

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        keep = 1 - s["p"]
        return a / keep if real_layer.training and keep else a

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        keep = 1 - s["p"]
        return (g / keep if real_layer.training and keep else g), c.n, {}

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import MaskedDropout

        return MaskedDropout(s["p"])

    def tf(self, s, g, h, v, run):
        if not run.training:
            return h
        import tensorflow as tf

        keep = 1 - s["p"]
        mask = tf.cast(run.masks[g.index], h.dtype)
        return h * (mask / keep if keep else mask * 0)  # torch's order: scale the mask

    def keras(self, s, g, dtype, plant=None):
        from ..runners.keras_layers import MaskedDropout

        return [MaskedDropout(s["p"], name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        if not run.training:
            return h
        keep = 1 - s["p"]
        mask = run.masks[g.index].astype(h.dtype)  # skylark's layout already (NCHW or CHW flat)
        return h * (mask / keep if keep else mask * 0)  # torch's order: scale the mask

    def onnx(self, s, g, b, h):
        if not b.training:
            return b.node("Dropout", [h])  # identity at inference (no training_mode input)
        keep = 1 - s["p"]
        mask = b.node("Cast", [f"mask.{g.index}"], to=b.elem)
        scaled = b.node("Div", [mask, b.const(keep)]) if keep else b.node("Mul", [mask,
                                                                                 b.const(0.0)])
        return b.node("Mul", [h, scaled])  # torch's order: scale the mask
