"""The Keras 3 reference: a keras.Sequential built from each layer kind's `keras` builder.

Runs on whatever backend Keras was imported with (KERAS_BACKEND; Keras fixes it at import, which
is why `keras-tensorflow`, `keras-torch` and `keras-jax` each live in their own subprocess, see
reference.runners.worker). The loss is SparseCategoricalCrossentropy(from_logits=True): with
logits the torch backend's clipping of probabilities (to [eps, 1 - eps]) never applies.

Skylark layer i becomes one or two Keras layers (reference.kinds): e.g. a conv2d with int
padding is ZeroPadding2D + Conv2D("valid"), a maxpool2d with int padding NegInfPadding2D +
MaxPooling2D("valid"); Keras' "same" is TF's rule on every backend.

Gradients: Keras has no autodiff of its own, so each backend's (tf.GradientTape, torch.autograd,
jax.vjp) differentiates a stateless call: the variables' values are passed in through
keras.StatelessScope, and every layer output gets a zero tensor added whose gradient is the
gradient with respect to that output (exact: x + 0 == x).

float64 runs change two global switches, and only while this runner works (`_float64_scope`,
entered by setup, trace, train_step, predict and get_params, restored on the way out): Keras'
64-to-32-bit promotion entry (fix_float64_promotion) and, on jax, x64 (jax.enable_x64). A float32
run, and the caller's own Keras, see stock settings.

Training uses keras.optimizers, configured to compute torch's step (keras_optim).
"""

from __future__ import annotations

import contextlib
import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before Keras imports TensorFlow

import keras
import numpy as np
from keras import ops

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
from .keras_optim import KerasStep
from .runner import PassGrads, Runner, name_tensors

require_builders("keras")

_STOCK_FLOAT64 = "SKYLARK_KERAS_STOCK_FLOAT64"


@contextlib.contextmanager
def fix_float64_promotion():
    """Make Keras' float64 really float64 on the torch and jax backends, inside the `with` only;
    yields what it did.

    Keras 3 (seen in 3.15) maps float64 to float32 in its type-promotion lattice on every backend
    but TensorFlow (keras/src/backend/common/dtypes.py: BIT64_TO_BIT32_DTYPE, "to be aligned with
    JAX's default behavior"), so ops.matmul casts two float64 operands to float32 and back: a
    float64 Dense on the torch backend is only float32-accurate (measured 5e-9 off numpy where
    torch itself is 1e-17 off) and the loss comes back float32. `skylark check` caught it at
    out.3, the first Dense. We lift that one entry and put it back on exit (the table is read on
    every promotion, after Keras' lru_caches, so both take effect at once); set
    SKYLARK_KERAS_STOCK_FLOAT64=1 to see stock Keras fail instead.
    """
    if os.environ.get(_STOCK_FLOAT64) == "1":
        yield f"off ({_STOCK_FLOAT64}=1)"
        return
    try:
        from keras.src.backend.common import dtypes
    except ImportError:
        yield "not needed"
        return
    table = getattr(dtypes, "BIT64_TO_BIT32_DTYPE", {})
    stock = table.get("float64", "float64")
    if stock == "float64":
        yield "not needed"
        return
    table["float64"] = "float64"
    try:
        yield "applied: float64 promotion kept 64-bit"
    finally:
        table["float64"] = stock


def promotion_state() -> dict:
    """The live global switches _float64_scope touches (stock outside it)."""
    from keras.src.backend.common import dtypes

    state = {"keras_float64_promotes_to": dtypes.BIT64_TO_BIT32_DTYPE.get("float64", "float64")}
    if keras.backend.backend() == "jax":
        import jax

        state["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
    return state


def _float64_scope(method):
    """Run `method` inside the float64 switches when this runner computes in float64."""

    @functools.wraps(method)
    def scoped(self, *args, **kwargs):
        if getattr(self, "dtype", None) != "float64":
            return method(self, *args, **kwargs)
        with contextlib.ExitStack() as stack:
            fix = stack.enter_context(fix_float64_promotion())
            if keras.backend.backend() == "jax":
                import jax

                stack.enter_context(jax.enable_x64(True))  # else jax computes float64 in float32
                fix += "; jax x64 enabled"
            self.float64_fix = fix
            return method(self, *args, **kwargs)

    return scoped


def _no_tf32(backend: str) -> None:
    """TF32 rounds float32 matmuls/convs to 10 mantissa bits on Ampere+ GPUs ."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def build_keras_groups(spec: list[dict], geometry, dtype: str, plant=None) -> list[list]:
    """For each skylark layer, the Keras layers (one, or a padding layer and one) that mirror it."""
    return [KINDS[s["kind"]].keras(s, g, dtype, plant)
            for s, g in zip(spec, geometry, strict=True)]


class KerasRunner(Runner):
    name = "keras"
    float64_fix: str | None = None
    _training, _n, _new_buffers = True, 0, {}

    def versions(self):
        backend = keras.backend.backend()
        lib = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}[backend]
        mod = __import__(lib)
        out = {**super().versions(), "keras": keras.__version__, "keras_backend": backend,
               lib: mod.__version__}
        if getattr(self, "dtype", None) == "float64" and self.float64_fix:
            out["keras_float64_fix"] = self.float64_fix  # what this run's float64 scope did
        return out

    def promotion_state(self) -> dict:
        return promotion_state()

    def setup(self, spec, params, dtype, input_shape, *, loss=None):
        self.float64_fix = None  # set again by the float64 scope of a float64 setup
        return super().setup(spec, params, dtype, input_shape, loss=loss)

    @_float64_scope
    def _build(self, params):
        self.backend = keras.backend.backend()
        _no_tf32(self.backend)
        c, h, w = self.input_shape
        self.groups = build_keras_groups(self.spec, self.geometry, self.dtype, self.plant)
        inp = keras.Input(shape=(h, w, c), dtype=self.dtype)
        # the functional API: a node's group of layers applied to the tensors it reads
        self.model = keras.Model(inp, self._apply(inp)[-1])
        plant = self.plant if self.plant in TRANSFER_PLANTS else None
        trainable = keras_param_shapes(self.spec, self.input_shape, grads=True)
        self.vars, self.buffers = {}, {}  # "i.kernel" / "i.moving_mean" -> keras.Variable
        index = {name: i for i, name in enumerate(self.node_names)}
        for k, v in to_keras(params, self.spec, self.input_shape, plant=plant).items():
            node, n = node_of(k), k.rsplit(".", 1)[1]
            var = getattr(self.groups[index[node]][-1], n)
            if tuple(var.shape) != v.shape:
                raise ValueError(
                    f"Keras variable {k!r}: expected shape {tuple(var.shape)}, received {v.shape}"
                )
            if not (self.plant == "keras_bn_unloaded" and k not in trainable):  # planted: tests
                var.assign(v.astype(self.dtype))
            (self.vars if k in trainable else self.buffers)[k] = var
        self.loss_fn = self._loss_fn()
        self.optimizer = None

    def _loss_fn(self):
        reduction = "sum" if self.loss["reduction"] == "sum" else "sum_over_batch_size"
        if self.plant == "loss_sum":  # planted bug, tests only
            reduction = "sum"
        eps = self.loss["label_smoothing"]
        if not eps:
            return keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction=reduction, dtype=self.dtype)
        # Keras smooths like torch (q = (1 - eps) * onehot + eps / K), on one-hot labels only
        cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps,
                                                   reduction=reduction, dtype=self.dtype)
        return lambda labels, logits: cce(ops.one_hot(labels, logits.shape[-1],
                                                      dtype=self.dtype), logits)

    # --- a stateless forward pass, differentiated by the backend's own autodiff ---------------

    def _stateless(self, prim, labels):
        """(loss, logits), (outs, new buffer values): the model on `prim` = [*variable values,
        x, *eps], with eps[i] added to out i (+ 0: its gradient is d/d out.i, exactly)."""
        nv = len(self.vars)
        values, x, eps = prim[:nv], prim[nv], prim[nv + 1:]
        mapping = [*zip(self.vars.values(), values, strict=True),
                   *((v, v.value) for v in self.buffers.values())]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outs = self._apply(x, eps, training=self._training)
            h = outs[-1]
            loss = self.loss_fn(labels, h)
            new = {k: scope.get_current_value(v) for k, v in self.buffers.items()}
        return (loss, h), (outs, new)

    def _apply(self, x, eps=None, **call):
        """Every node's output: its Keras layers applied in turn to what it reads, plus
        eps[i] when given (+ 0: its gradient is d/d out.i, exactly)."""

        def node(s, g, h):
            for layer in self.groups[g.index]:
                h = layer(h, **call)
            return h if eps is None else ops.add(h, eps[g.index])

        return run_graph(self.spec, self.geometry, x, node)

    def _grads_tensorflow(self, prim, labels, cot):
        import tensorflow as tf

        prim = [tf.constant(v) for v in prim]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(prim)
            (loss, logits), outs = self._stateless(prim, labels)
        grads = {"loss": tape.gradient(loss, prim)}
        if cot is not None:
            grads["cot"] = tape.gradient(logits, prim, output_gradients=tf.constant(cot))
        return loss, outs, grads

    def _grads_torch(self, prim, labels, cot):
        import torch

        prim = [torch.tensor(v, requires_grad=True) for v in prim]
        (loss, logits), outs = self._stateless(prim, torch.tensor(labels))
        grads = {"loss": torch.autograd.grad(loss, prim, retain_graph=cot is not None)}
        if cot is not None:
            grads["cot"] = torch.autograd.grad(logits, prim, grad_outputs=torch.tensor(cot))
        return loss, outs, grads

    def _grads_jax(self, prim, labels, cot):
        import jax
        import jax.numpy as jnp

        (loss, logits), vjp, outs = jax.vjp(lambda p: self._stateless(p, labels),
                                            [jnp.asarray(v) for v in prim], has_aux=True)
        grads = {"loss": vjp((jnp.ones_like(loss), jnp.zeros_like(logits)))[0]}
        if cot is not None:
            grads["cot"] = vjp((jnp.zeros_like(loss), jnp.asarray(cot)))[0]
        return loss, outs, grads

    def _vjp(self, x, labels, cot=None):
        """Forward, then the gradient w.r.t. (values, x, eps) from the loss and from `cot`,
        by the backend's own autodiff (Keras has none of its own)."""
        values = [ops.convert_to_numpy(v.value) for v in self.vars.values()]
        eps = [np.zeros((x.shape[0], *_nhwc(s)), self.dtype) for s in self.out_shapes]
        grads_fn = getattr(self, f"_grads_{self.backend}", None)
        if grads_fn is None:
            raise RuntimeError(f"keras: unsupported backend {self.backend!r}")
        loss, (outs, new), grads = grads_fn([*values, x, *eps], labels, cot)
        to_np = ops.convert_to_numpy
        self._new_buffers = {k: to_np(v) for k, v in new.items()}
        return (
            to_np(loss), [to_np(o) for o in outs],
            {tag: [to_np(t) for t in g] for tag, g in grads.items()}, len(values),
        )

    def _set_mode(self, training: bool, masks) -> None:
        """The mode of the next stateless pass, and the dropout keep-masks in Keras' layout."""
        self._training = training
        for i, mask in self.keras_masks(self._check_masks(masks, self._n, training)).items():
            self.groups[i][-1].mask = mask

    def _stats(self) -> dict:
        """The updated running statistics by skylark name (training passes)."""
        if not self._training or not self._new_buffers:
            return {}
        got = {k: ops.convert_to_numpy(v.value) for k, v in {**self.vars, **self.buffers}.items()}
        state = from_keras({**got, **self._new_buffers}, self.spec, self.input_shape)
        return {k: state[k] for k in state if k.endswith(("running_mean", "running_var"))}

    @_float64_scope
    def trace(self, x, labels, cotangent, *, training=True, masks=None):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        self._n = len(x)
        self._set_mode(training, masks)
        src = self.flat_sources
        loss, outs, grads, nv = self._vjp(
            activation_to_keras(x), labels, activation_to_keras(cot, src[-1])
        )
        passes = {}
        for tag, g in grads.items():
            params = from_keras(dict(zip(self.vars, g[:nv], strict=True)), self.spec,
                                self.input_shape, grads=True)
            d_outs = [activation_from_keras(d, src[i]) for i, d in enumerate(g[nv + 1:])]
            passes[tag] = PassGrads(activation_from_keras(g[nv]), d_outs, params)
        return name_tensors([activation_from_keras(o, src[i]) for i, o in enumerate(outs)],
                            loss, passes, self._stats(), self.node_names)

    @_float64_scope
    def _train_setup(self):
        self.optimizer = KerasStep(self.optim, list(self.vars.values()), self.clip, self.plant)

    @_float64_scope
    def train_step(self, x, labels, *, masks=None, lr=None):
        x, labels = self._check_batch(x, labels)
        if self.optimizer is None:
            raise RuntimeError("keras: call train_setup(...) first")
        self._n = len(x)
        self._set_mode(True, masks)
        loss, _, grads, nv = self._vjp(activation_to_keras(x), labels)
        for k, value in self._new_buffers.items():
            self.buffers[k].assign(value)
        grads = [ops.convert_to_tensor(g, self.dtype) for g in grads["loss"][:nv]]
        self.optimizer.update(list(self.vars.values()), grads, self.lr if lr is None else lr)
        return float(loss)

    @_float64_scope
    def predict(self, x):
        (x,) = self._check_batch(x)
        return ops.convert_to_numpy(self.model(activation_to_keras(x), training=False))

    @_float64_scope
    def get_params(self):
        self._check_setup()
        return from_keras(
            {k: ops.convert_to_numpy(v.value) for k, v in {**self.vars, **self.buffers}.items()},
            self.spec, self.input_shape,
        )


def _nhwc(shape):
    """(C, H, W) -> (H, W, C); a flat (F,) stays."""
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)
