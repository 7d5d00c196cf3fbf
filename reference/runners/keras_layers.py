"""Keras layers for what keras.layers cannot say directly (used by reference.kinds)."""

from __future__ import annotations

import math

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
    becomes 0.10000000149 there. On the JAX backend it calls jax.nn.leaky_relu, which takes
    x >= 0: its gradient at exactly 0 is 1, where torch and TF (and skylark) give the slope."""

    def __init__(self, negative_slope: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def call(self, x):
        return ops.where(x > 0, x, x * _exact(self.negative_slope, x.dtype))

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ExactHardsigmoid(keras.layers.Layer):
    """relu6(x + 3) / 6 with torch's kinks (the gradient 1/6 strictly inside -3 < x < 3), as a
    where on x: exact in float64 on every backend. Keras' hard_sigmoid on the torch backend is
    F.hardsigmoid, whose backward multiplies by a float32 1/6 (reference.kinds.hard)."""

    def call(self, x):
        inside = ops.logical_and(x > -3, x < 3)
        return ops.where(inside, (x + 3) / 6, ops.cast(x >= 3, x.dtype))

    def compute_output_shape(self, shape):
        return shape


class ExactGELU(keras.layers.Layer):
    """GELU ("none": x/2 (1 + erf(x / sqrt 2)); "tanh": its tanh approximation) with every
    constant in the input's dtype. Keras' gelu on the TensorFlow backend is tf.nn.gelu, whose
    constants are cast through float32 (reference.kinds.gated): 4e-9 off in float64."""

    def __init__(self, approximate: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.approximate = approximate

    def call(self, x):
        if self.approximate == "tanh":
            k, c = _exact(math.sqrt(2 / math.pi), x.dtype), _exact(0.044715, x.dtype)
            return 0.5 * x * (1 + ops.tanh(k * (x + c * x * x * x)))
        return 0.5 * x * (1 + ops.erf(x * _exact(math.sqrt(0.5), x.dtype)))

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


def _window_taps(x, kernel, strides, dilation, out_hw):
    """Tap (p, q) of every window of an NHWC map, row-major: the strided view
    x[:, p*dh + i*sh, q*dw + j*sw, :] over the output grid (i, j)."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, strides, dilation, out_hw
    for p in range(kh):
        for q in range(kw):
            yield x[:, p * dh : p * dh + (ho - 1) * sh + 1 : sh,
                    q * dw : q * dw + (wo - 1) * sw + 1 : sw, :]


class _PaddedPool2D(keras.layers.Layer):
    """An NHWC pool over a map padded explicitly ((top, bottom, left, right)) with `pad_value`;
    the output grid is the floor-mode one of the padded map."""

    pad_value = 0.0

    def __init__(self, kernel_size, strides, pads, dilation=(1, 1), **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel_size, self.strides = tuple(kernel_size), tuple(strides)
        self.dilation, self.pads = tuple(dilation), tuple(int(p) for p in pads)

    def _padded(self, x):
        t, b, l, r = self.pads
        return ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=self.pad_value)

    def _out(self, h, w):
        t, b, l, r = self.pads
        return tuple(None if n is None else (n + lo + hi - d * (k - 1) - 1) // s + 1
                     for n, lo, hi, k, s, d in zip((h, w), (t, l), (b, r), self.kernel_size,
                                                   self.strides, self.dilation, strict=True))

    def compute_output_shape(self, shape):
        n, h, w, c = shape
        return (n, *self._out(h, w), c)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "strides": self.strides, "pads": self.pads, "dilation": self.dilation}


class DilatedMaxPool2D(_PaddedPool2D):
    """Max-pooling with a dilation (keras.layers.MaxPooling2D has none): -inf padding, then a
    running maximum over the window's taps in row-major order with a strict `>` (ops.where), so
    the gradient goes to the FIRST maximum of a window, as in torch. (A max reduction over the
    stacked taps would split a tie's gradient among the tied elements.)"""

    pad_value = float("-inf")

    def call(self, x):
        best = None
        for tap in _window_taps(self._padded(x), self.kernel_size, self.strides, self.dilation,
                                self._out(x.shape[1], x.shape[2])):
            best = tap if best is None else ops.where(tap > best, tap, best)
        return best


class RealCellsAvgPool2D(_PaddedPool2D):
    """Average pooling over the REAL cells of each window only: zero padding, the window's sum,
    divided by the number of real cells in it. torch's count_include_pad=False for int padding;
    also TF's "same" where a Keras backend gets it wrong (see reference.kinds.avgpool2d)."""

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        out = self._out(h, w)
        total = None
        for tap in _window_taps(self._padded(x), self.kernel_size, self.strides, (1, 1), out):
            total = tap if total is None else total + tap
        t, _, l, _ = self.pads
        rows = [min(i * self.strides[0] - t + self.kernel_size[0], h)
                - max(i * self.strides[0] - t, 0) for i in range(out[0])]
        cols = [min(j * self.strides[1] - l + self.kernel_size[1], w)
                - max(j * self.strides[1] - l, 0) for j in range(out[1])]
        counts = [[[float(a * b)] for b in cols] for a in rows]  # (H_out, W_out, 1)
        return total / ops.convert_to_tensor(counts, dtype=x.dtype)


class BinMatrixAdaptiveAvgPool2D(keras.layers.Layer):
    """torch's adaptive average pool on NHWC as raw TF says it (reference.kinds.
    adaptiveavgpool2d): each bin's sum by two fixed 0/1 bin matrices (einsum), divided by its
    cell count. For the sizes whose bins Keras' own layer gets wrong on its JAX backend (see
    `keras_jax_bins_are_wrong` there)."""

    def __init__(self, s_h, s_w, count, **kwargs) -> None:
        super().__init__(**kwargs)
        self.s_h, self.s_w, self.count = s_h, s_w, count  # numpy float64

    def call(self, x):
        s_h, s_w, count = (ops.convert_to_tensor(a, dtype=x.dtype)
                           for a in (self.s_h, self.s_w, self.count))
        return ops.einsum("ih,nhwc,jw->nijc", s_h, x, s_w) / count[None, :, :, None]

    def compute_output_shape(self, shape):
        return shape[0], self.s_h.shape[0], self.s_w.shape[0], shape[3]


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


class ChannelSlice(keras.layers.Layer):
    """Channels start .. stop - 1 of an NHWC map or a flat input: the LAST axis in Keras (the
    same slice on axis 1, as in torch's NCHW, would cut rows of the image instead)."""

    def __init__(self, start: int, stop: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, shape):
        return (*shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


class ConcatNCHWMemory(keras.layers.Layer):
    """PLANTED BUG (tests only): a port's channel concat done the NCHW way on NHWC tensors:
    each input transposed to NCHW, joined on axis 1, then RESHAPED (not transposed) back to
    the (H, W, C) output shape. Same shape, every value in the wrong place."""

    def __init__(self, out_shape, **kwargs) -> None:
        super().__init__(**kwargs)
        self.out_shape = tuple(int(d) for d in out_shape)  # (C, H, W)

    def call(self, xs):
        c, h, w = self.out_shape
        cat = ops.concatenate([ops.transpose(x, (0, 3, 1, 2)) for x in xs], axis=1)
        return ops.reshape(cat, (-1, h, w, c))

    def compute_output_shape(self, shapes):
        c, h, w = self.out_shape
        return (shapes[0][0], h, w, c)


class GateNCHW(keras.layers.Layer):
    """PLANTED BUG (tests only): a squeeze-excite gate reshaped to torch's (N, C, 1, 1) and
    multiplied into an NHWC map: where H == C it broadcasts without an error, each ROW scaled
    by the gate of the channel with its index."""

    def __init__(self, channels: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channels = int(channels)

    def call(self, xs):
        x, gate = xs
        return ops.multiply(x, ops.reshape(gate, (-1, self.channels, 1, 1)))

    def compute_output_shape(self, shapes):
        return shapes[0]
