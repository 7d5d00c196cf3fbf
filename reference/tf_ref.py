"""The raw TensorFlow reference: tf.Variable, tf.nn ops in NHWC, tf.GradientTape. No Keras.

Each layer is its kind's `tf` builder (reference.kinds), ops one to one: tf.nn.conv2d
(+ tf.nn.bias_add) with TF's own "same"/"valid", tf.nn.max_pool2d, tf.nn.relu, tf.reshape of
NHWC (H, W, C feature order: reference.transfer permutes the next dense's rows), tf.matmul.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr

import tensorflow as tf

from .kinds import KINDS, require_builders
from .runner import PassGrads, Runner, name_tensors
from .transfer import (
    TRANSFER_PLANTS,
    activation_from_keras,
    activation_to_keras,
    from_keras,
    to_keras,
)

require_builders("tf")

# TF32 would round float32 matmuls/convs to 10 mantissa bits on Ampere+ GPUs.
tf.config.experimental.enable_tensor_float_32_execution(False)


class TFRunner(Runner):
    name = "tf"

    def versions(self):
        return {**super().versions(), "tensorflow": tf.__version__}

    def _build(self, params):
        plant = self.plant if self.plant in TRANSFER_PLANTS else None
        kparams = to_keras(params, self.spec, self.input_shape, plant=plant)
        self.vars = {k: tf.Variable(v.astype(self.dtype), name=k) for k, v in kparams.items()}
        self.velocity = None

    def _forward(self, x):
        """x NHWC -> list of every layer's output (TF layout)."""
        outs, h = [], x
        for s, g in zip(self.spec, self.geometry, strict=True):
            v = {n: self.vars[f"{g.index}.{n}"] for n in ("kernel", "bias")
                 if f"{g.index}.{n}" in self.vars}
            h = KINDS[s["kind"]].tf(s, g, h, v)
            outs.append(h)
        return outs

    def _loss(self, logits, labels):
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        # reduce_sum is the planted bug (tests only)
        return tf.reduce_sum(ce) if self.plant == "loss_sum" else tf.reduce_mean(ce)

    def _x(self, x):
        return tf.constant(activation_to_keras(x))  # NCHW -> NHWC

    def trace(self, x, labels, cotangent):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        xt = self._x(x)
        names = list(self.vars)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xt)
            outs = self._forward(xt)
            loss = self._loss(outs[-1], tf.constant(labels))
        src, n = self.flat_sources, len(outs)
        cot_t = tf.constant(activation_to_keras(cot, src[-1]))
        sources = [xt, *outs, *(self.vars[k] for k in names)]
        passes = {}
        for tag, target, seed in (("loss", loss, None), ("cot", outs[-1], cot_t)):
            g = [t.numpy() for t in tape.gradient(target, sources, output_gradients=seed)]
            params = from_keras(dict(zip(names, g[1 + n:], strict=True)), self.spec,
                                self.input_shape)
            passes[tag] = PassGrads(
                activation_from_keras(g[0]),
                [activation_from_keras(d, src[i]) for i, d in enumerate(g[1 : 1 + n])], params)
        del tape
        return name_tensors([activation_from_keras(o.numpy(), src[i]) for i, o in enumerate(outs)],
                            loss.numpy(), passes)

    def _train_setup(self):
        # The update is written out (there is no SGD in raw TF; tf.keras' SGD is Keras, and its
        # momentum form m = mu*m - lr*g; p += m rounds differently from torch's): torch's rule.
        self.velocity = {}

    def train_step(self, x, labels):
        x, labels = self._check_batch(x, labels)
        if self.velocity is None:
            raise RuntimeError("tf: call train_setup(lr, momentum) first")
        names = list(self.vars)
        with tf.GradientTape() as tape:
            loss = self._loss(self._forward(self._x(x))[-1], tf.constant(labels))
        grads = tape.gradient(loss, [self.vars[k] for k in names])
        lr = tf.constant(self.lr, self.dtype)
        for k, g in zip(names, grads, strict=True):
            if self.momentum:
                v = self.velocity.get(k)
                v = g if v is None else tf.constant(self.momentum, self.dtype) * v + g
                self.velocity[k] = v
                g = v
            self.vars[k].assign_sub(lr * g)
        return float(loss.numpy())

    def predict(self, x):
        (x,) = self._check_batch(x)
        return self._forward(self._x(x))[-1].numpy()

    def get_params(self):
        self._check_setup()
        return from_keras({k: v.numpy() for k, v in self.vars.items()}, self.spec, self.input_shape)
