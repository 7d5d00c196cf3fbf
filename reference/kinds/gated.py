"""silu, gelu: the self-gated activations (skylark.layers.activation_gated) in every framework.

How each framework says each one, and why:

- silu: torch nn.SiLU, tf.nn.silu, Keras Activation("silu"), jax.nn.silu, ONNX x * Sigmoid(x)
  (opset 17 has no Swish op). All exact in float64.
- gelu: `approximate` ("none" | "tanh", torch's names) always stated in the spec, since the
  defaults differ: torch nn.GELU "none", tf.nn.gelu approximate=False, keras.activations.gelu
  approximate=False (keras.layers.Activation("gelu") too), keras.ops.gelu approximate=True,
  jax.nn.gelu approximate=True (tests/test_gelu.py reads them from the installed signatures).
  torch nn.GELU(approximate=...); jax.nn.gelu(approximate=bool); tf.nn.gelu in float32. In
  float64 tf.nn.gelu is NOT exact: it casts its constants with math_ops.cast(0.7071067811865476,
  dtype) (and 0.044715), and a Python float is first made a float32 tensor, so the constant is
  the float32 one (measured: 4.1e-9 off numpy for "none", 5.8e-10 for "tanh"; the bar is
  1e-10). Raw TF writes the formula with float64 constants there, and Keras on the TensorFlow
  backend (whose gelu IS tf.nn.gelu) uses keras_layers.ExactGELU in float64. ONNX (opset 17,
  no Gelu op): x/2 * (1 + Erf(x / sqrt 2)) or the tanh formula from nodes in float32; in
  float64 onnxruntime has no Erf kernel, so erfc is built from Cody's rational functions in
  ONNX nodes (`onnx_erfc`, the algorithm of skylark.layers.erf).
"""

from __future__ import annotations

import math

import skylark as sk
from skylark.layers import erf as cody

from .pointwise import Pointwise

SQRT_HALF = math.sqrt(0.5)
TANH_SCALE = math.sqrt(2 / math.pi)
TANH_CUBIC = 0.044715


class SiLU(Pointwise):
    """Spec: no fields.

    Budget: lipschitz 1.1 (max silu' = 1.0998 at x = 2.4), offset 0 (|y| <= |x|). evaluation 6:
    the sigmoid is within 5.5 eps32 |s| (reference.kinds.activations _Smooth) and the product
    one more rounding: 6 eps32 |y| per library (measured <= 1.4 eps32 * M in torch, TF, JAX,
    ONNX and numpy on 600k float32 inputs). grad_evaluation 8: f' = s (1 + x (1 - s)) moves by
    |1 + x (1 - 2s)| <= |x| + 1 per unit of error in s, whose absolute error is a quarter ulp
    of 1 (eps32 / 4) where s is near 1 and rounds to exactly 1 from x ~ 17 on: (17 + 1) / 4
    = 4.5, plus four roundings of |f'| <= L: 6.5 eps32 * L|g| (measured <= 5.63).
    """

    name = "silu"
    layer = sk.SiLU
    lipschitz, offset, evaluation, grad_evaluation = 1.1, 0.0, 6, 8

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.SiLU()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.nn.silu(h)

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Activation("silu", name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax

        return jax.nn.silu(h)

    def onnx(self, s, g, b, h):
        return b.node("Mul", [h, b.node("Sigmoid", [h])])


class GELU(Pointwise):
    """Spec: approximate ("none" | "tanh"; always stated, the defaults differ: module docstring).

    Budget: lipschitz 1.13 (max GELU' = 1.1289 at x = sqrt 2, either form), offset 0 (|y| <=
    |x|). evaluation 4: erf or tanh within 2 ulps, four roundings, and the cancellation in
    1 + erf(x / sqrt 2) (or 1 + tanh) for x < 0, an absolute eps32 times |x| / 2: 3.5 eps32 * M
    per library (measured <= 2.6, torch's "none"). grad_evaluation: "none" 4: Phi + x phi from
    an erf and an exp within 2 ulps and five roundings of at most L|g| (measured <= 1.89);
    "tanh" 48: f' = (1 + t)/2 + x (1 - t^2) k (1 + 3c x^2) / 2 moves by |1/2 - x t k (1 + 3c
    x^2)|, up to 19.3 at x = 5.16 (beyond, tanh rounds to exactly +-1 in float32 and 1 - t^2
    is 0 in every library), per unit of error in t: 19.3 times tanh's error near +-1, which is
    up to 2 eps32 in TF's and JAX's float32 tanh: measured 31.2 eps32 * L|g| (TF), 27.9 (JAX),
    9.1 (numpy), 7.7 (torch); 48 is 1.5 times the worst seen. Curved: |GELU''| <= 0.8.
    """

    name = "gelu"
    layer = sk.GELU
    lipschitz, offset, evaluation = 1.13, 0.0, 4

    def _tanh(self, s) -> bool:
        return s["approximate"] == "tanh"

    def grad_count(self, s) -> float:
        return 48 if self._tanh(s) else 4

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.GELU(approximate=s["approximate"])

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        if h.dtype == tf.float32:
            return tf.nn.gelu(h, approximate=self._tanh(s))
        # float64: tf.nn.gelu's constants are float32 ones (module docstring)
        if self._tanh(s):
            k, c = tf.constant(TANH_SCALE, h.dtype), tf.constant(TANH_CUBIC, h.dtype)
            return 0.5 * h * (1.0 + tf.math.tanh(k * (h + c * h * h * h)))
        return 0.5 * h * tf.math.erfc(h * tf.constant(-SQRT_HALF, h.dtype))

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..runners.keras_layers import ExactGELU

        if dtype == "float64" and keras.backend.backend() == "tensorflow":  # tf.nn.gelu: above
            return [ExactGELU(s["approximate"], name=f"l{g.index}", dtype=dtype)]
        return [keras.layers.Activation(_keras_gelu(self._tanh(s)), name=f"l{g.index}",
                                        dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax

        return jax.nn.gelu(h, approximate=self._tanh(s))  # numpy constants of x's dtype

    def onnx(self, s, g, b, h):
        half_x = b.node("Mul", [h, b.const(0.5)])
        if self._tanh(s):  # both dtypes: Tanh has a float64 kernel
            cube = b.node("Mul", [b.node("Mul", [h, h]), h])
            inner = b.node("Add", [h, b.node("Mul", [cube, b.const(TANH_CUBIC)])])
            t = b.node("Tanh", [b.node("Mul", [inner, b.const(TANH_SCALE)])])
            return b.node("Mul", [half_x, b.node("Add", [t, b.const(1.0)])])
        if b.portable:  # float64: no Erf kernel
            return b.node("Mul", [half_x, onnx_erfc(b, b.node("Mul", [h, b.const(-SQRT_HALF)]))])
        erf = b.node("Erf", [b.node("Mul", [h, b.const(SQRT_HALF)])])
        return b.node("Mul", [half_x, b.node("Add", [erf, b.const(1.0)])])


def _keras_gelu(approximate: bool):
    """keras.activations.gelu with `approximate` stated (its default is False; keras.ops.gelu's
    is True), as a named function for keras.layers.Activation."""
    import keras

    def gelu(x):
        return keras.activations.gelu(x, approximate=approximate)

    gelu.__name__ = "gelu_tanh" if approximate else "gelu"
    return gelu


def _horner(b, t, top, num_coefs, den_coefs):
    """Cody's loop: num = top * t, den = t; then num = (num + a) * t, den = (den + b) * t."""
    num, den = b.node("Mul", [t, b.const(top)]), t
    for a, c in zip(num_coefs, den_coefs, strict=True):
        num = b.node("Mul", [b.node("Add", [num, b.const(a)]), t])
        den = b.node("Mul", [b.node("Add", [den, b.const(c)]), t])
    return num, den


def _ratio(b, num, den, a, c):
    return b.node("Div", [b.node("Add", [num, b.const(a)]), b.node("Add", [den, b.const(c)])])


def _exp_minus_square(b, v):
    """exp(-v^2) as Cody computes it: v rounded down to sixteenths first, then the rest."""
    sixteenths = b.node("Div", [b.node("Floor", [b.node("Mul", [v, b.const(16.0)])]),
                                b.const(16.0)])
    first = b.node("Exp", [b.node("Neg", [b.node("Mul", [sixteenths, sixteenths])])])
    rest = b.node("Mul", [b.node("Sub", [v, sixteenths]), b.node("Add", [v, sixteenths])])
    return b.node("Mul", [first, b.node("Exp", [b.node("Neg", [rest])])])


def onnx_erfc(b, z: str) -> str:
    """erfc(z) as ONNX nodes of the graph's dtype: Cody's three rational approximations
    (skylark.layers.erf, same coefficients and order of operations), each evaluated on |z|
    clipped into its interval (so no branch makes an inf or a nan), then chosen with Where."""
    y = b.node("Abs", [z])

    def clip(lo, hi):
        return b.node("Clip", [y, b.const(lo), b.const(hi)])

    def horner(t, top, num_coefs, den_coefs):
        return _horner(b, t, top, num_coefs, den_coefs)

    def ratio(num, den, a, c):
        return _ratio(b, num, den, a, c)

    def exp_minus_square(v):
        return _exp_minus_square(b, v)

    # |z| <= THRESH: erfc = 1 - z * R1(z^2), z clipped to +-THRESH (its sign kept)
    z1 = b.node("Clip", [z, b.const(-cody.THRESH), b.const(cody.THRESH)])
    y1sq = b.node("Mul", [z1, z1])
    num, den = horner(y1sq, cody._A[4], cody._A[:3], cody._B[:3])
    small = b.node("Sub", [b.const(1.0), b.node("Mul", [z1, ratio(num, den, cody._A[3],
                                                                   cody._B[3])])])
    # THRESH < |z| <= 4: erfc(|z|) = exp(-z^2) R2(|z|)
    y2 = clip(cody.THRESH, 4.0)
    num, den = horner(y2, cody._C[8], cody._C[:7], cody._D[:7])
    mid = b.node("Mul", [exp_minus_square(y2), ratio(num, den, cody._C[7], cody._D[7])])
    # 4 < |z| < XBIG: erfc(|z|) = exp(-z^2) / |z| * (1/sqrt(pi) - R3(1/z^2) / z^2)
    y3 = clip(4.0, cody.XBIG)
    inv = b.node("Div", [b.const(1.0), b.node("Mul", [y3, y3])])
    num, den = horner(inv, cody._P[5], cody._P[:4], cody._Q[:4])
    r3 = b.node("Mul", [inv, ratio(num, den, cody._P[4], cody._Q[4])])
    tail = b.node("Mul", [exp_minus_square(y3),
                          b.node("Div", [b.node("Sub", [b.const(cody.SQRPI), r3]), y3])])

    def where(cond, a, c):
        return b.node("Where", [cond, a, c])

    big = where(b.node("LessOrEqual", [y, b.const(4.0)]), mid,
                where(b.node("Less", [y, b.const(cody.XBIG)]), tail, b.const(0.0)))
    signed = where(b.node("Less", [z, b.const(0.0)]), b.node("Sub", [b.const(2.0), big]), big)
    return where(b.node("LessOrEqual", [y, b.const(cody.THRESH)]), small, signed)
