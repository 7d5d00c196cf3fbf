"""The raw TensorFlow reference: tf.Variable, tf.nn ops in NHWC, tf.GradientTape. No Keras.

Each layer is its kind's `tf` builder (reference.kinds), ops one to one: tf.nn.conv2d
(+ tf.nn.bias_add) with TF's own "same"/"valid", tf.nn.max_pool2d, tf.nn.relu, tf.reshape of
NHWC (H, W, C feature order: reference.transfer permutes the next dense's rows), tf.matmul.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr

import tensorflow as tf

from ..kinds import KINDS, require_builders
from ..spec import node_of, run_graph
from ..transfer import (
    TRANSFER_PLANTS,
    activation_from_keras,
    activation_to_keras,
    from_keras,
    keras_param_shapes,
    to_keras,
)
from .runner import PassGrads, Runner, name_tensors
from .tf_optim import RawOpsStep

require_builders("tf")

# TF32 would round float32 matmuls/convs to 10 mantissa bits on Ampere+ GPUs.
tf.config.experimental.enable_tensor_float_32_execution(False)


class TFRun:
    """One pass's context for the layer builders: the mode, the dropout keep-masks (TF layout)
    and the running statistics the batch-norm layers computed (Keras names)."""

    def __init__(self, training: bool = True, masks=None) -> None:
        self.training, self.masks, self.new_state = training, masks or {}, {}


class TFRunner(Runner):
    name = "tf"

    def versions(self):
        return {**super().versions(), "tensorflow": tf.__version__}

    def _build(self, params):
        plant = self.plant if self.plant in TRANSFER_PLANTS else None
        kparams = to_keras(params, self.spec, self.input_shape, plant=plant)
        self.vars = {k: tf.Variable(v.astype(self.dtype), name=k) for k, v in kparams.items()}
        self.trainable = list(keras_param_shapes(self.spec, self.input_shape, grads=True))
        self.optimizer = None

    def _forward(self, x, run: TFRun | None = None):
        """x NHWC -> list of every node's output (TF layout)."""
        run = run or TFRun()
        own = {g.name: {} for g in self.geometry}  # node -> its variables by Keras name
        for k, var in self.vars.items():
            own[node_of(k)][k.rsplit(".", 1)[1]] = var
        return run_graph(self.spec, self.geometry, x,
                         lambda s, g, h: KINDS[s["kind"]].tf(s, g, h, own[g.name], run))

    def _loss(self, logits, labels):
        eps, k = self.loss["label_smoothing"], logits.shape[-1]
        logp = tf.nn.log_softmax(logits)
        ce = -tf.gather(logp, labels, axis=1, batch_dims=1)
        if eps:  # torch's smoothing: (1 - eps) * nll + eps * mean_k(-log p_k)
            ce = (1 - eps) * ce + eps * (-tf.reduce_sum(logp, axis=1) / k)
        if self.loss["reduction"] == "sum" or self.plant == "loss_sum":  # plant: tests only
            return tf.reduce_sum(ce)
        return tf.reduce_mean(ce)

    def _x(self, x):
        return tf.constant(activation_to_keras(x))  # NCHW -> NHWC

    def _run(self, training, masks, n) -> TFRun:
        masks = self._check_masks(masks, n, training)
        return TFRun(training, {i: tf.constant(m) for i, m in self.keras_masks(masks).items()})

    def _stats(self, run: TFRun) -> dict:
        """Updated running statistics by skylark name."""
        if not run.new_state:
            return {}
        got = {k: v.numpy() for k, v in self.vars.items()}
        got.update({k: v.numpy() for k, v in run.new_state.items()})
        state = from_keras(got, self.spec, self.input_shape)
        return {k: state[k] for k in state if k.endswith(("running_mean", "running_var"))}

    def trace(self, x, labels, cotangent, *, training=True, masks=None):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        xt, run = self._x(x), self._run(training, masks, len(x))
        names = self.trainable
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xt)
            outs = self._forward(xt, run)
            loss = self._loss(outs[-1], tf.constant(labels))
        src, n = self.flat_sources, len(outs)
        cot_t = tf.constant(activation_to_keras(cot, src[-1]))
        sources = [xt, *outs, *(self.vars[k] for k in names)]
        passes = {}
        for tag, target, seed in (("loss", loss, None), ("cot", outs[-1], cot_t)):
            g = [t.numpy() for t in tape.gradient(target, sources, output_gradients=seed)]
            params = from_keras(dict(zip(names, g[1 + n:], strict=True)), self.spec,
                                self.input_shape, grads=True)
            passes[tag] = PassGrads(
                activation_from_keras(g[0]),
                [activation_from_keras(d, src[i]) for i, d in enumerate(g[1 : 1 + n])], params)
        del tape
        return name_tensors([activation_from_keras(o.numpy(), src[i]) for i, o in enumerate(outs)],
                            loss.numpy(), passes, self._stats(run), self.node_names)

    def _train_setup(self):
        self.optimizer = RawOpsStep(self.optim, {k: self.vars[k] for k in self.trainable},
                                    self.clip, self.plant)

    def train_step(self, x, labels, *, masks=None, lr=None):
        x, labels = self._check_batch(x, labels)
        if self.optimizer is None:
            raise RuntimeError("tf: call train_setup(...) first")
        run = self._run(True, masks, len(x))
        with tf.GradientTape() as tape:
            loss = self._loss(self._forward(self._x(x), run)[-1], tf.constant(labels))
        grads = tape.gradient(loss, [self.vars[k] for k in self.trainable])
        self.optimizer.update(dict(zip(self.trainable, grads, strict=True)),
                              self.lr if lr is None else lr)
        for k, v in run.new_state.items():
            self.vars[k].assign(v)
        return float(loss.numpy())

    def predict(self, x):
        (x,) = self._check_batch(x)
        return self._forward(self._x(x), TFRun(training=False))[-1].numpy()

    def get_params(self):
        self._check_setup()
        return from_keras({k: v.numpy() for k, v in self.vars.items()}, self.spec, self.input_shape)
