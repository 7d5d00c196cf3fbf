"""leaky_relu, sigmoid, tanh: the smooth and the sloped element-wise activations."""

from __future__ import annotations

import skylark as sk

from .base import Kind


class LeakyReLU(Kind):
    """Spec: negative_slope (always stated: torch's default is 0.01, Keras' 0.3)."""

    name = "leaky_relu"
    layer = sk.LeakyReLU

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        return a * max(1.0, s["negative_slope"])  # errors grow by at most the larger slope

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.LeakyReLU(s["negative_slope"])

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        # Not tf.nn.leaky_relu: its alpha is a float32 attribute, so a float64 slope of 0.1
        # becomes 0.10000000149 (measured: 5.6e-9 off numpy in float64 where every other op
        # is 1e-16 off). The slope as a tensor of h's dtype keeps float64 exact.
        slope = tf.constant(s["negative_slope"], h.dtype)
        return tf.where(h > 0, h, h * slope)

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..runners.keras_layers import ExactLeakyReLU

        if plant == "keras_leaky_default":  # planted (tests only): Keras' default slope, 0.3
            return [keras.layers.LeakyReLU(name=f"l{g.index}", dtype=dtype)]
        backend = keras.backend.backend()
        # tensorflow: keras.layers.LeakyReLU calls tf.nn.leaky_relu, the float32 slope above;
        # jax: jax.nn.leaky_relu takes x >= 0, so its gradient at exactly 0 is 1, not the slope
        if backend == "jax" or (dtype == "float64" and backend == "tensorflow"):
            return [ExactLeakyReLU(s["negative_slope"], name=f"l{g.index}", dtype=dtype)]
        return [keras.layers.LeakyReLU(negative_slope=s["negative_slope"], name=f"l{g.index}",
                                       dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp

        # the slope a weakly typed Python float: it takes h's dtype, so float64 stays exact
        return jnp.where(h > 0, h, h * s["negative_slope"])

    def onnx(self, s, g, b, h):
        if b.dtype == "float32":
            return b.node("LeakyRelu", [h], alpha=s["negative_slope"])
        # ONNX's alpha is a float32 attribute (as tf.nn.leaky_relu's): in float64 the slope is
        # a float64 constant instead
        return b.node("Where", [b.node("Greater", [h, b.const(0.0)]), h,
                                b.node("Mul", [h, b.const(s["negative_slope"])])])


class _Smooth(Kind):
    """An activation f with |f'| <= lipschitz: input errors shrink by it, and the backward's
    f'(x) reads the forward's x, whose error adds n_in * max(1, m_in) to the gradient's count
    (|f''| <= 1 for tanh and sigmoid).

    f itself is not a reduction, but it is not exact either: every library evaluates it in its
    own way, each within a few ulps. numpy's float32 exp is within 3 ulps and its tanh within 2
    (the tolerances of numpy's own accuracy tests, umath-validation-set-{exp,tanh}.csv), so
    skylark's sigmoid, exp then two roundings, is within 5.5 eps32 * |y|; measured on 1.2M
    float32 inputs, torch's, TF's and jax's sigmoid and tanh are within 4.1 eps32 * |y| of the
    exact value. Each is thus within 6 eps32 * |y| and two of them within 12 eps32 * |y| <=
    K_SAFETY * 6 * eps32 * M: the forward adds `evaluation = 6` to the count. Without it an
    activation with no reduction before it (on the input) had a budget of 0 and failed in
    every framework on differences of 1 or 2 ulps (tests/test_activation.py).

    The backward reads f'(y) from the output (y(1 - y), 1 - y**2, in every framework), and two
    outputs differ by up to 12 eps32 * |y|: that moves f'(y) by 12 eps32 * |y * df'/dy| <= 12
    eps32 * sensitivity (sigmoid: y|1 - 2y| <= 1; tanh: 2y**2 <= 2), so g_in by K_SAFETY * eps32
    * (6 * sensitivity / lipschitz) * M(g_in): the backward adds that count too.
    """

    lipschitz = 1.0
    offset = 0.0  # |f(x)| <= lipschitz * |x| + offset
    sensitivity = 2.0  # max |y * df'/dy| over the outputs y
    evaluation = 6  # the function's own rounding, in n_reduce units (above)

    def f32_forward(self, s, g, batch):
        return self.evaluation

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        return a * self.lipschitz + self.offset

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        own = self.evaluation * self.sensitivity / self.lipschitz
        return g * self.lipschitz, c.n + c.n_in * max(1.0, c.m_in) + own, {}


class Sigmoid(_Smooth):
    """Spec: no fields."""

    name = "sigmoid"
    layer = sk.Sigmoid
    lipschitz, offset, sensitivity = 0.25, 1.0, 1.0

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.Sigmoid()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.math.sigmoid(h)

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Activation("sigmoid", name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax

        return jax.nn.sigmoid(h)

    def onnx(self, s, g, b, h):
        return b.node("Sigmoid", [h])


class Tanh(_Smooth):
    """Spec: no fields."""

    name = "tanh"
    layer = sk.Tanh

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.Tanh()

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        return tf.math.tanh(h)

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Activation("tanh", name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp

        return jnp.tanh(h)

    def onnx(self, s, g, b, h):
        return b.node("Tanh", [h])
