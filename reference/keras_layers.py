"""Keras layers for what keras.layers cannot say directly (used by reference.kinds)."""

from __future__ import annotations

import keras
from keras import ops


def _exact(value: float, dtype):
    """A Python float as a tensor of `dtype`, converted once, in that dtype."""
    return ops.convert_to_tensor(value, dtype=dtype)


class NegInfPadding2D(keras.layers.Layer):
    """Pad an NHWC map with -inf ((top, bottom, left, right)), for max-pooling with int padding:
    ZeroPadding2D would put a 0 in the window, which wins whenever the real values there are all
    negative."""

    def __init__(self, pads, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pads = tuple(int(p) for p in pads)

    def call(self, x):
        t, b, l, r = self.pads
        return ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=float("-inf"))

    def compute_output_shape(self, shape):
        t, b, l, r = self.pads
        n, h, w, c = shape
        return n, None if h is None else h + t + b, None if w is None else w + l + r, c

    def get_config(self):
        return {**super().get_config(), "pads": self.pads}


class MaskedDropout(keras.layers.Layer):
    """Dropout whose keep-mask (NHWC or flat in Keras' order) is set on `.mask` by the runner
    before each training call: every framework drops the same elements."""

    def __init__(self, p: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.p = float(p)
        self.mask = None

    def call(self, x, training=None):
        if not training:
            return x
        keep = _exact(1 - self.p, x.dtype)
        mask = ops.cast(self.mask, x.dtype)
        return x * (mask / keep if self.p < 1 else mask * 0)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "p": self.p}


class UnbiasedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization with torch's running-variance update: the running variance
    moves with the UNBIASED batch variance (n / (n - 1) times the biased one Keras uses;
    n = N*H*W). Everything else is Keras' own: its momentum (the weight of the old value, so
    1 - torch's), its epsilon, its moments and its normalisation."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=False)
        mean, variance = self._moments(inputs, None)
        n = 1
        for d in self._reduction_axes:
            n *= int(inputs.shape[d])
        # every scalar in the input's dtype: Keras turns a Python float into a float32 tensor
        # first on some backends (ops.cast(0.1, "float64") is 0.10000000149 on TensorFlow)
        m, unbias = (_exact(c, inputs.dtype) for c in (self.momentum, n / (n - 1)))
        self.moving_mean.assign(self.moving_mean * m + mean * (1 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * unbias * (1 - m))
        gamma, beta = ops.cast(self.gamma, inputs.dtype), ops.cast(self.beta, inputs.dtype)
        return ops.batch_normalization(inputs, mean, variance, axis=self.axis, offset=beta,
                                       scale=gamma, epsilon=self.epsilon)


class ExactLeakyReLU(keras.layers.Layer):
    """LeakyReLU with the slope in the input's dtype. keras.layers.LeakyReLU on the TensorFlow
    backend calls tf.nn.leaky_relu, whose slope is a float32 attribute: a float64 slope of 0.1
    becomes 0.10000000149 there."""

    def __init__(self, negative_slope: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def call(self, x):
        return ops.where(x > 0, x, x * _exact(self.negative_slope, x.dtype))

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class StridedDilatedConv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D with strides > 1 AND dilation_rate > 1, which Keras refuses ("`strides
    > 1` not supported in conjunction with `dilation_rate > 1`"): the stride-1 dilated conv,
    sampled every stride. Exact, not an approximation: output (i, j) of the strided conv is
    output (i*sh, j*sw) of the stride-1 one on the same input. Padding must be "valid" (pad
    explicitly in front: a stride-1 "same" pads differently from a strided one). The kernel
    is Keras' own single variable, (kh, kw, C_in/groups, filters)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", **kwargs) -> None:
        if padding != "valid":
            raise ValueError("StridedDilatedConv2D takes explicit padding only (a ZeroPadding2D "
                             f"in front). Received: padding={padding!r}")
        super().__init__(filters, kernel_size, strides=1, padding="valid", **kwargs)
        self.subsample = tuple(int(s) for s in strides)

    def call(self, inputs):
        sh, sw = self.subsample
        return super().call(inputs)[:, ::sh, ::sw, :]  # NHWC

    def compute_output_shape(self, input_shape):
        n, h, w, c = super().compute_output_shape(input_shape)
        sh, sw = self.subsample
        return n, None if h is None else -(-h // sh), None if w is None else -(-w // sw), c

    def get_config(self):
        return {**super().get_config(), "strides": self.subsample}
