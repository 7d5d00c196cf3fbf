"""relu6, hardsigmoid, hardswish: the piecewise-linear activations (skylark.layers.activation_hard)
in every framework, with torch's gradient at every kink.

How each framework says each one, and why:

- relu6: torch nn.ReLU6, tf.nn.relu6, Keras Activation("relu6") (tf.nn.relu6, F.relu6 or
  jax.nn.relu6 by backend), jax.nn.relu6 (a custom JVP: 0 at both kinks, as torch), ONNX Clip
  with min 0 and max 6. All exact, kinks included (tests/test_activation_hard.py).
- hardsigmoid: relu6(x + 3) / 6 in TF, JAX and Keras (whose hard_sigmoid is that on every
  backend). torch's nn.Hardsigmoid multiplies the gradient by a FLOAT32 1/6 even in float64
  (aten/src/ATen/native/cpu/Activation.cpp: `const scalar_t one_sixth(1.0f / 6.0f)`), 2e-8
  off where everything else is 1e-17 off: in float64 torch_layers.Hardsigmoid and, on Keras'
  torch backend, keras_layers.ExactHardsigmoid compute it as a `where` on x instead (the
  stock error stays in view in tests/test_activation_hard.py). ONNX: HardSigmoid with
  alpha=1/6, beta=0.5 STATED (its defaults are alpha=0.2, beta=0.5: Keras 2's hard sigmoid,
  a classic porting trap) in float32; float64 has no HardSigmoid kernel in onnxruntime, so
  Clip(x + 3, 0, 6) / 6 there.
- hardswish: x * relu6(x + 3) / 6 in TF and JAX (and Keras' hard_silu); torch nn.Hardswish;
  ONNX HardSwish in float32, x * Clip(x + 3, 0, 6) / 6 in float64 (no double kernel). Their
  derivative is torch's at the kinks: relu6' is 0 at both of its kinks.

One difference stays, deliberately: torch tests -3 < x < 3 on x itself, TF/JAX/Keras test
0 < x + 3 < 6 on the rounded sum. They disagree only for x within an ulp or two of 3 (x + 3
rounds to 6 there); an input that close to the kink is a rounding coin toss, not a port bug.
"""

from __future__ import annotations

import skylark as sk

from .base import Kind
from .pointwise import Pointwise


class ReLU6(Kind):
    """Spec: no fields. Exact in every framework (a compare and a min/max): no budget."""

    name = "relu6"
    layer = sk.ReLU6

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        # not min(a, 6): an input bound above 6 still bounds the error passed through
        # (Lipschitz 1) where the exact input lies below 6
        return a

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.ReLU6()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.nn.relu6(h)

    def keras(self, s, g, dtype, plant=None):
        import keras

        if plant == "keras_relu6_as_relu":  # planted (tests only): no clipping at 6
            return [keras.layers.ReLU(name=f"l{g.index}", dtype=dtype)]
        return [keras.layers.Activation("relu6", name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax

        return jax.nn.relu6(h)  # its custom JVP: 0 at x == 0 and x == 6, as torch

    def onnx(self, s, g, b, h):
        return b.node("Clip", [h, b.const(0.0), b.const(6.0)])


def _clip3(b, h):
    """relu6(h + 3) as ONNX nodes (Clip takes its bounds as inputs since opset 11)."""
    return b.node("Clip", [b.node("Add", [h, b.const(3.0)]), b.const(0.0), b.const(6.0)])


class Hardsigmoid(Pointwise):
    """Spec: no fields.

    Budget: lipschitz 1/6 and offset 1/2 (|y| <= |x|/6 + 1/2). evaluation 2: (x + 3), the
    division by 6 and ONNX's float32 alpha = 1/6 are three roundings, 1.5 eps32 * M per library
    (measured: <= 1.0 eps32 * M in torch, TF, JAX, ONNX and numpy on 600k float32 inputs).
    grad_evaluation 1: dy / 6 (torch: dy times a float32 1/6) is two roundings of |dy| / 6,
    1 eps32 * L|g| (measured <= 0.25). Not curved: f' is 0 or 1/6.
    """

    name = "hardsigmoid"
    layer = sk.Hardsigmoid
    lipschitz, offset, evaluation, grad_evaluation, curved = 1 / 6, 0.5, 2, 1, False

    def torch(self, s, g, plant=None):
        from ..runners.torch_layers import Hardsigmoid

        return Hardsigmoid()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        # 3 and 6 are exact in every float type; relu6' is 0 at both kinks, as torch's
        return tf.nn.relu6(h + 3.0) / 6.0

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..runners.keras_layers import ExactHardsigmoid

        if dtype == "float64" and keras.backend.backend() == "torch":  # F.hardsigmoid: above
            return [ExactHardsigmoid(name=f"l{g.index}", dtype=dtype)]
        return [keras.layers.Activation("hard_sigmoid", name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax

        return jax.nn.hard_sigmoid(h)  # relu6(x + 3.) / 6.: weak Python floats, exact in x64

    def onnx(self, s, g, b, h):
        if b.portable:  # float64: no HardSigmoid kernel
            return b.node("Div", [_clip3(b, h), b.const(6.0)])
        # alpha and beta STATED: ONNX's defaults are alpha=0.2, beta=0.5 (Keras 2's slope)
        return b.node("HardSigmoid", [h], alpha=1 / 6, beta=0.5)


class Hardswish(Pointwise):
    """Spec: no fields.

    Budget: lipschitz 1.5 (f' runs from -1/2 to 3/2), offset 0 (|y| <= |x|). evaluation 2:
    x + 3, the product and the division (ONNX: alpha * x, + 1/2, the product, and alpha = 1/6
    itself) are at most four roundings of |y| <= M, 2 eps32 * M per library (measured <= 0.73).
    grad_evaluation 2: dy * (x / 3 + 1/2) is three roundings of at most 1.5 |dy| (autodiff of
    x * relu6(x + 3) / 6 adds terms of |x + 3| / 6 and |x| / 6, whose sum is <= 1 on the
    linear part), 2 eps32 * L|g| per library (measured <= 0.89). Curved: |f''| = 1/3 there.
    """

    name = "hardswish"
    layer = sk.Hardswish
    lipschitz, offset, evaluation, grad_evaluation = 1.5, 0.0, 2, 2

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.Hardswish()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return h * tf.nn.relu6(h + 3.0) / 6.0  # torch's order: (x * relu6(x + 3)) / 6

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Activation("hard_silu", name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax

        return jax.nn.hard_swish(h)  # x * relu6(x + 3.) / 6.

    def onnx(self, s, g, b, h):
        if b.portable:  # float64: no HardSwish kernel
            return b.node("Div", [b.node("Mul", [h, _clip3(b, h)]), b.const(6.0)])
        return b.node("HardSwish", [h])  # opset 14: alpha 1/6, beta 1/2 fixed by the op
