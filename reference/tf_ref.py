"""The raw TensorFlow reference: tf.Variable, tf.nn ops in NHWC, tf.GradientTape. No Keras.

Layers map to ops one to one: conv2d -> tf.nn.conv2d (+ tf.nn.bias_add), "same"/"valid" passed
through as TF's own padding (TF defines the "same" rule skylark follows), int padding as explicit
per-side pads; maxpool2d -> tf.nn.max_pool2d; an int pool padding first pads with -inf via tf.pad
(tf.nn.max_pool2d takes no explicit pads, and zero padding would win in an all-negative window);
flatten -> reshape of NHWC, i.e. H, W, C order (transfer.py permutes the next dense's rows).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr

import numpy as np
import tensorflow as tf

from .runners import Runner
from .spec import resolved_pads
from .transfer import (
    TRANSFER_PLANTS,
    activation_from_keras,
    activation_to_keras,
    from_keras,
    to_keras,
)

# TF32 would round float32 matmuls/convs to 10 mantissa bits on Ampere+ GPUs (PITFALLS.md #10).
tf.config.experimental.enable_tensor_float_32_execution(False)


class TFRunner(Runner):
    name = "tf"

    def versions(self):
        return {**super().versions(), "tensorflow": tf.__version__}

    def _build(self, params):
        plant = self.plant if self.plant in TRANSFER_PLANTS else None
        kparams = to_keras(params, self.spec, self.input_shape, plant=plant)
        self.vars = {k: tf.Variable(v.astype(self.dtype), name=k) for k, v in kparams.items()}
        self.pads = resolved_pads(self.spec, self.input_shape)
        self.velocity = None

    def _forward(self, x):
        """x NHWC -> list of every layer's output (TF layout)."""
        outs, h = [], x
        for i, s in enumerate(self.spec):
            kind = s["kind"]
            if kind == "conv2d":
                pad = s["padding"]
                if isinstance(pad, str):
                    pad = pad.upper()  # "VALID" / "SAME": TF's own rule
                else:
                    ph, pw = pad
                    pad = [[0, 0], [ph, ph], [pw, pw], [0, 0]]
                h = tf.nn.conv2d(h, self.vars[f"{i}.kernel"], [1, *s["stride"], 1], pad)
                if s["bias"]:
                    h = tf.nn.bias_add(h, self.vars[f"{i}.bias"])
            elif kind == "maxpool2d":
                pad = s["padding"]
                if isinstance(pad, str):
                    pad = pad.upper()
                else:
                    t, b, l, r = self.pads[i]
                    neg_inf = tf.constant(-np.inf, h.dtype)
                    h = tf.pad(h, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=neg_inf)
                    pad = "VALID"
                h = tf.nn.max_pool2d(h, s["kernel_size"], s["stride"], pad)
            elif kind == "relu":
                h = tf.nn.relu(h)
            elif kind == "flatten":
                h = tf.reshape(h, [tf.shape(h)[0], -1])  # NHWC -> H, W, C feature order
            elif kind == "dense":
                h = tf.matmul(h, self.vars[f"{i}.kernel"])
                if s["bias"]:
                    h = h + self.vars[f"{i}.bias"]
            outs.append(h)
        return outs

    def _loss(self, logits, labels):
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        # reduce_sum is the planted bug (tests only)
        return tf.reduce_sum(ce) if self.plant == "loss_sum" else tf.reduce_mean(ce)

    def _x(self, x):
        return tf.constant(activation_to_keras(x))  # NCHW -> NHWC

    def collect(self, x, labels, cotangent):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        xt = self._x(x)
        names = list(self.vars)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xt)
            outs = self._forward(xt)
            loss = self._loss(outs[-1], tf.constant(labels))
        src = self.flat_sources
        result = {f"out.{i}": activation_from_keras(o.numpy(), src[i]) for i, o in enumerate(outs)}
        result["loss"] = loss.numpy()
        cot_t = tf.constant(activation_to_keras(cot, src[-1]))
        sources = [xt, *outs, *(self.vars[k] for k in names)]
        for tag, target, seed in (("loss", loss, None), ("cot", outs[-1], cot_t)):
            g = [t.numpy() for t in tape.gradient(target, sources, output_gradients=seed)]
            result[f"{tag}/d.input"] = activation_from_keras(g[0])
            for i in range(len(outs)):
                result[f"{tag}/d.out.{i}"] = activation_from_keras(g[1 + i], src[i])
            pg = dict(zip(names, g[1 + len(outs):], strict=True))
            pg = from_keras(pg, self.spec, self.input_shape)
            result.update({f"{tag}/d.{k}": v for k, v in pg.items()})
        del tape
        return result

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
