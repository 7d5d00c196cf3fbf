"""stochasticdepth: skylark.StochasticDepth (torchvision.ops.StochasticDepth: one keep decision
per sample, mode "row", or per batch, mode "batch"), with the keep-mask supplied by the
harness, as for dropout, so that every framework drops the same samples.

How each framework says it, every one in torchvision's order (the noise divided by the
survival rate 1 - p first, when that is > 0, then multiplied into x; in float32 that is two
roundings, noise / (1 - p) then x * that, the same two everywhere, so the outputs agree
bit for bit):

- torch: torch_layers.MaskedStochasticDepth, torchvision's function with the noise given
  (tests/test_stochastic_depth.py checks it against torchvision.ops.stochastic_depth).
- Keras: its own form of this layer is Dropout(p, noise_shape=(None, 1, 1, 1)) (EfficientNet
  in Keras Applications), which draws its own noise; the reference uses
  keras_layers.MaskedDropout with the (N, 1, 1, 1) keep-mask, broadcast over (H, W, C): the
  same x * (mask / (1 - p)).
- raw TF, raw JAX, ONNX: the mask cast to the dtype, divided by 1 - p, times x. In eval mode
  the identity (ONNX: an Identity node; an exported file is an eval graph).

The mask's axes after the batch's are all 1, so it reads the same in NCHW and NHWC and is
handed to Keras and raw TF unconverted (Runner.keras_masks).
"""

from __future__ import annotations

import skylark as sk

from .base import Kind


class StochasticDepth(Kind):
    """Spec: p, mode ("row" | "batch")."""

    name = "stochasticdepth"
    layer = sk.StochasticDepth
    uses_mask = True

    def mask_shape(self, s, batch, in_shape):
        return (batch if s["mode"] == "row" else 1,) + (1,) * len(in_shape)

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        keep = 1 - s["p"]
        return a / keep if real_layer.training and keep else a

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        keep = 1 - s["p"]
        return (g / keep if real_layer.training and keep else g), c.n, {}

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import MaskedStochasticDepth

        return MaskedStochasticDepth(s["p"])

    def tf(self, s, g, h, v, run):
        if not run.training or s["p"] == 0:
            return h
        import tensorflow as tf

        keep = 1 - s["p"]
        mask = tf.cast(run.masks[g.index], h.dtype)
        return h * (mask / keep if keep else mask)  # torchvision's order: scale the noise

    def keras(self, s, g, dtype, plant=None):
        from ..runners.keras_layers import MaskedDropout

        return [MaskedDropout(s["p"], name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        if not run.training or s["p"] == 0:
            return h
        keep = 1 - s["p"]
        mask = run.masks[g.index].astype(h.dtype)
        return h * (mask / keep if keep else mask)  # torchvision's order: scale the noise

    def onnx(self, s, g, b, h):
        if not b.training or s["p"] == 0:
            return b.node("Identity", [h])
        keep = 1 - s["p"]
        mask = b.node("Cast", [f"mask.{g.index}"], to=b.elem)
        scaled = b.node("Div", [mask, b.const(keep)]) if keep else mask
        return b.node("Mul", [h, scaled])  # torchvision's order: scale the noise
