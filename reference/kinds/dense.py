"""dense: skylark.Dense (weight (out, in), as torch.nn.Linear) in every framework."""

from __future__ import annotations

import skylark as sk

from .base import Kind


class Dense(Kind):
    """Spec: in_features, out_features, bias (bool). After a flatten, its rows follow the
    flatten order, which differs between frameworks (reference.transfer permutes them)."""

    name = "dense"
    layer = sk.Dense
    input_rank = 1
    in_field = "in_features"


    def flat_source(self, in_shape, out_shape, in_source):
        return None  # its outputs are its own features: no map order survives a dense

    def f32_forward(self, s, g, batch):
        return s["in_features"] + int(s["bias"])

    def f32_input_grad(self, s):
        return s["out_features"]

    def f32_weight_grad(self, s, g, batch):
        return batch

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.Linear(s["in_features"], s["out_features"], bias=s["bias"])

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        h = tf.matmul(h, v["kernel"])
        return h + v["bias"] if s["bias"] else h

    def keras(self, s, g, dtype, plant=None):
        import keras

        return [keras.layers.Dense(s["out_features"], use_bias=s["bias"], name=f"l{g.index}",
                                   dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp
        from jax import lax

        h = jnp.matmul(h, p["weight"].T, precision=lax.Precision.HIGHEST)  # weight (out, in)
        return h + p["bias"] if s["bias"] else h

    def onnx(self, s, g, b, h):
        bias = [b.param(f"{g.name}.bias")] if s["bias"] else []
        # Gemm(transB=1) takes torch's (out, in) weight as it is
        return b.node("Gemm", [h, b.param(f"{g.name}.weight"), *bias], transB=1)
