"""batchnorm2d: skylark.BatchNorm2d (torch's eps, momentum and unbiased running variance).

The porting traps, each handled in the open here: Keras' momentum is 1 - torch's (torch 0.1 is
Keras 0.9; Keras' default 0.99 is torch's 0.01), and Keras moves the running variance with the
*biased* batch variance where torch uses the unbiased one. The Keras reference is Keras' own
BatchNormalization given momentum 1 - m, with only that one update made torch's
(keras_layers.UnbiasedBatchNormalization); stock Keras is the test-only plant "keras_bn_biased",
which `skylark check` catches at the running variance.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

import skylark as sk

from .base import Kind
from .onnx_ops import channel_vector

_AXES = (0, 2, 3)


def _nhw(g, batch: int) -> int:
    _, h, w = g.in_shape
    return batch * h * w


class BatchNorm2d(Kind):
    """Spec: num_features, eps, momentum (torch's convention)."""

    name = "batchnorm2d"
    layer = sk.BatchNorm2d
    input_rank = 3
    in_field = "num_features"
    keras_names: ClassVar[dict] = {"weight": "gamma", "bias": "beta",
                                   "running_mean": "moving_mean", "running_var": "moving_variance"}


    def informative_state(self, s, state, rng):
        c = s["num_features"]
        draw = {"weight": (0.5, 1.5), "bias": (-0.5, 0.5), "running_mean": (-0.5, 0.5),
                "running_var": (0.5, 2.0)}
        return {k: rng.uniform(*draw[k], c).astype(v.dtype) for k, v in state.items()}

    # float32 budget: x - mean is a subtraction of terms up to |x| + |mean|, so its rounding
    # is eps * (|x| + |mean|), not eps * |x - mean|: on a constant channel (a conv reading only
    # padding) numpy's xhat is exactly 0 while a framework's is an ulp of the mean times invstd.
    # The magnitude of xhat is bounded by _xhat_bound accordingly (found by skylark fuzz).
    # The mean and variance are sums over N*H*W (2 * NHW in the count). An
    # input error d (|d| <= D per channel: the mean and variance mix a channel's elements) moves
    # y = weight * (x - mean) * invstd + bias by at most |weight| * invstd * (2 + |xhat|) * D:
    # d - mean(d) is at most 2D, and the variance moves by 2 mean(|x - mean| |d|) <= 2 std D
    # (Cauchy-Schwarz), so invstd by invstd**3 * std * D <= invstd**2 * D, which |x - mean|
    # turns into |xhat| * invstd * D. The bound is LINEAR in the input's: a BN renormalises,
    # and a bound that grew with a power of the input's (as (dev * invstd)**3 once did) blew
    # up to inf through the five BatchNorms of a ResNet. M(y) adds |y|'s own bound, the
    # magnitude the next layer's sums see.
    def f32_forward(self, s, g, batch):
        return 2 * _nhw(g, batch)

    def f32_forward_in(self, s, g, batch, real_layer):
        # eval: (x - mean) * invstd * weight + bias on constants, 4 roundings and no sum (the
        # training count of 2 * NHW here made a trained EfficientNet's logit budget 1e4)
        return self.f32_forward(s, g, batch) if real_layer._cache.batch_stats else 4

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        c = real_layer._cache
        gamma = np.abs(real_layer.weight)[:, None, None]
        inv = c.invstd[:, None, None]
        xhat = _xhat_bound(c)
        beta = np.abs(real_layer.bias)[:, None, None]
        if not c.batch_stats:  # eval: mean and invstd are constants, the error scales by them
            return gamma * inv * a + gamma * xhat + beta
        per_channel = a.max(axis=_AXES)[:, None, None]  # D: the largest input bound, per channel
        return gamma * inv * (2 + xhat) * per_channel + gamma * xhat + beta

    def f32_stats(self, s, real_layer, a, n_in, batch):
        if not real_layer.training:
            return {}
        nhw = batch * a.shape[2] * a.shape[3]
        dev = a + np.abs(real_layer._cache.mean)[:, None, None]
        var = (dev**2).mean(axis=_AXES) * nhw / (nhw - 1)
        return {"running_mean": (n_in + nhw, np.abs(real_layer.running_mean) + a.mean(axis=_AXES)),
                "running_var": (2 * n_in + nhw + 2, np.abs(real_layer.running_var) + var)}

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        cache = real_layer._cache
        xhat = _xhat_bound(cache)
        nhw = _nhw(c.geometry, c.batch)
        scale = (np.abs(real_layer.weight) * cache.invstd)[:, None, None]
        grads = {"weight": (c.n + nhw + c.n_in + 2 * nhw, (g * xhat).sum(axis=_AXES)),
                 "bias": (c.n + nhw, g.sum(axis=_AXES))}
        if not cache.batch_stats:
            return g * scale, c.n, grads
        mean_g = g.mean(axis=_AXES)[:, None, None]
        mean_gx = (g * xhat).mean(axis=_AXES)[:, None, None]
        g_in = 2 * scale * (g + mean_g + xhat * mean_gx)
        return g_in, c.n + c.n_in + 4 * nhw, grads

    # builders
    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.BatchNorm2d(s["num_features"], eps=s["eps"], momentum=s["momentum"])

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        if run.training:
            mean, var = tf.nn.moments(h, axes=[0, 1, 2])
            n = int(h.shape[0]) * int(h.shape[1]) * int(h.shape[2])
            m = tf.constant(s["momentum"], h.dtype)
            run.new_state[f"{g.name}.moving_mean"] = (1 - m) * v["moving_mean"] + m * mean
            run.new_state[f"{g.name}.moving_variance"] = (
                (1 - m) * v["moving_variance"] + m * var * (n / (n - 1)))  # torch: unbiased
        else:
            mean, var = v["moving_mean"], v["moving_variance"]
        return tf.nn.batch_normalization(h, mean, var, v["beta"], v["gamma"], s["eps"])

    def keras(self, s, g, dtype, plant=None):
        import keras

        from ..runners.keras_layers import UnbiasedBatchNormalization

        cls = UnbiasedBatchNormalization
        if plant == "keras_bn_biased":  # planted (tests only): stock Keras' biased update
            cls = keras.layers.BatchNormalization
        # Keras' momentum is the weight of the OLD running value: 1 - torch's
        momentum = s["momentum"] if plant == "keras_bn_momentum" else 1 - s["momentum"]
        eps = {} if plant == "keras_bn_eps" else {"epsilon": s["eps"]}  # planted: Keras' 1e-3
        return [cls(momentum=momentum, name=f"l{g.index}", dtype=dtype, **eps)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp

        c = (None, slice(None), None, None)  # a (C,) vector against NCHW
        if run.training:
            mean = h.mean(axis=_AXES)
            var = ((h - mean[c]) ** 2).mean(axis=_AXES)  # biased: what normalises the batch
            n = h.shape[0] * h.shape[2] * h.shape[3]
            m = s["momentum"]  # torch's convention: the weight of the batch value
            run.new_state[f"{g.name}.running_mean"] = (1 - m) * p["running_mean"] + m * mean
            run.new_state[f"{g.name}.running_var"] = (
                (1 - m) * p["running_var"] + m * var * (n / (n - 1)))  # torch: unbiased
        else:
            mean, var = p["running_mean"], p["running_var"]
        return (h - mean[c]) / jnp.sqrt(var[c] + s["eps"]) * p["weight"][c] + p["bias"][c]

    def onnx(self, s, g, b, h):
        i, c = g.name, s["num_features"]
        mean, var = b.param(f"{i}.running_mean"), b.param(f"{i}.running_var")
        weight, bias = b.param(f"{i}.weight"), b.param(f"{i}.bias")
        if not b.training and not b.portable:  # float32 inference: the standard node
            return b.node("BatchNormalization", [h, weight, bias, mean, var], epsilon=s["eps"])
        # training (batch statistics), or float64, where the node's float32 `epsilon`
        # attribute would round eps: (x - mean) / sqrt(var + eps) * weight + bias, spelled out
        if b.training:
            mean, var = _onnx_batch_stats(b, s, g, h)
        else:
            mean, var = channel_vector(b, mean, c), channel_vector(b, var, c)
        inv = b.node("Sqrt", [b.node("Add", [var, b.const(s["eps"])])])
        xhat = b.node("Div", [b.node("Sub", [h, mean]), inv])
        return b.node("Add", [b.node("Mul", [xhat, channel_vector(b, weight, c)]),
                              channel_vector(b, bias, c)])


def _onnx_batch_stats(b, s, g, h):
    """The batch mean and biased variance (1, C, 1, 1) of `h`, and the running statistics'
    update (torch's: the unbiased variance) exposed as outputs "stat.{i}.running_mean/var"."""
    i, c = g.name, s["num_features"]
    mean = b.node("ReduceMean", [h], axes=list(_AXES), keepdims=1)
    dev = b.node("Sub", [h, mean])
    var = b.node("ReduceMean", [b.node("Mul", [dev, dev])], axes=list(_AXES), keepdims=1)
    dims = b.node("Gather", [b.node("Shape", [h]), b.ints(*_AXES)])  # N, H, W: the batch is
    n = b.node("Cast", [b.node("ReduceProd", [dims], keepdims=0)], to=b.elem)  # dynamic
    unbiased = b.node("Div", [b.node("Mul", [var, n]), b.node("Sub", [n, b.const(1.0)])])
    m = b.const(s["momentum"])
    for name, batch in (("running_mean", mean), ("running_var", unbiased)):
        old = b.param(f"{i}.{name}")
        new = b.node("Add", [b.node("Mul", [b.node("Sub", [b.const(1.0), m]), old]),
                             b.node("Mul", [m, b.node("Reshape", [batch, b.ints(c)])])])
        b.add_output(f"stat.{i}.{name}", new, [c])
    return mean, var


def _xhat_bound(cache) -> np.ndarray:
    """|xhat| plus |mean| * invstd in training mode: the magnitude x - mean is computed from."""
    xhat = np.abs(cache.xhat)
    if not cache.batch_stats:
        return xhat
    return xhat + (np.abs(cache.mean) * cache.invstd)[:, None, None]
