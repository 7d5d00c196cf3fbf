"""The raw JAX reference: jax.lax and jax.numpy ops in skylark's layout, jax.vjp for every
gradient. No Keras, no Flax.

Each layer is its kind's `jax` builder (reference.kinds), ops one to one:
lax.conv_general_dilated with ("NCHW", "OIHW", "NCHW") dimension numbers, lax.reduce_window
(max with -inf padding; add for average pooling), jnp.matmul against the (out, in) weight, a
reshape of the NCHW map (C, H, W order). These are skylark's own layouts, so nothing is
transposed (reference.transfer's to_jax/from_jax only check names and shapes).

Functional: the model is a pure function of (x, parameters, buffers, dropout masks). `trace`
takes one jax.vjp of (loss, logits) with respect to the input, every parameter, and a zero
added to every layer's output (the gradient with respect to that zero IS d/d out.i), then pulls
back (1, 0) for the loss pass and (0, cot) for the cotangent pass. `train_step` and `predict`
run jax.jit-compiled functions (compiled once per batch shape); `trace` runs op by op.

float64: jax computes float64 in float32 unless x64 is on (jax_enable_x64, off by default), so
this module turns it on for its process at import. Every array is built with an explicit dtype,
so float32 runs stay float32 (a float32 tensor in a float64 run would fail the check outright).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..kinds import KINDS, require_builders
from ..spec import node_of, run_graph
from ..transfer import from_jax, to_jax
from .runner import PassGrads, Runner, name_tensors

require_builders("jax")
jax.config.update("jax_enable_x64", True)  # else float64 silently computes in float32


class JaxRun:
    """One pass's context for the layer builders: the mode, the dropout keep-masks (skylark's
    layout) and the running statistics the batch-norm layers computed (skylark names)."""

    def __init__(self, training: bool = True, masks=None) -> None:
        self.training, self.masks, self.new_state = training, masks or {}, {}


def _node_state(state: dict, names) -> dict:
    """Each node's arrays by their own names: "layer1.0.conv1.weight" -> {"layer1.0.conv1":
    {"weight": ...}}."""
    out = {n: {} for n in names}
    for k, v in state.items():
        out[node_of(k)][k.rsplit(".", 1)[1]] = v
    return out


class JaxRunner(Runner):
    name = "jax"

    def versions(self):
        import jaxlib

        return {**super().versions(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def _build(self, params):
        state = to_jax(params, self.spec)
        self.params = {k: jnp.asarray(v, self.dtype) for k, v in state.items()
                       if k in self.param_names}
        self.buffers = {k: jnp.asarray(v, self.dtype) for k, v in state.items()
                        if k not in self.param_names}
        self.optimizer = None
        self._grad = jax.jit(jax.value_and_grad(self._train_loss, has_aux=True))
        self._predict = jax.jit(lambda params, buffers, x: self._forward(
            x, params, buffers, JaxRun(training=False))[-1])

    def _forward(self, x, params, buffers, run: JaxRun, deltas=None):
        """x NCHW -> every layer's output; `deltas` (zeros) are added to the outputs so that
        their gradients are the outputs' gradients."""
        own = _node_state({**params, **buffers}, self.node_names)

        def apply(s, g, h):
            out = KINDS[s["kind"]].jax(s, g, h, own[g.name], run)
            return out if deltas is None else out + deltas[g.index]

        return run_graph(self.spec, self.geometry, x, apply)

    def _loss(self, logits, labels):
        eps, k = self.loss["label_smoothing"], logits.shape[-1]
        logp = jax.nn.log_softmax(logits)
        ce = -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
        if eps:  # torch's smoothing: (1 - eps) * nll + eps * mean_k(-log p_k)
            ce = (1 - eps) * ce + eps * (-logp.sum(axis=1) / k)
        return ce.sum() if self.loss["reduction"] == "sum" else ce.mean()

    def _masks(self, masks, n: int, training: bool) -> dict:
        return {i: jnp.asarray(m) for i, m in self._check_masks(masks, n, training).items()}

    def _stats(self, training: bool, new_state: dict) -> dict:
        """Every buffer after the update, by skylark name (none outside training)."""
        if not training:
            return {}
        return {k: np.asarray(v) for k, v in {**self.buffers, **new_state}.items()}

    def trace(self, x, labels, cotangent, *, training=True, masks=None):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        masks, labels = self._masks(masks, len(x), training), jnp.asarray(labels)
        deltas = [jnp.zeros((len(x), *shape), self.dtype) for shape in self.out_shapes]

        def f(xj, params, deltas):
            run = JaxRun(training, masks)
            outs = self._forward(xj, params, self.buffers, run, deltas)
            return (self._loss(outs[-1], labels), outs[-1]), (outs, run.new_state)

        (loss, logits), pull, (outs, new_state) = jax.vjp(
            f, jnp.asarray(x), self.params, deltas, has_aux=True)
        passes = {}
        for tag, seed in (("loss", (jnp.ones_like(loss), jnp.zeros_like(logits))),
                          ("cot", (jnp.zeros_like(loss), jnp.asarray(cot)))):
            dx, dp, dd = pull(seed)
            grads = from_jax({k: np.asarray(v) for k, v in dp.items()}, self.spec, grads=True)
            passes[tag] = PassGrads(np.asarray(dx), [np.asarray(d) for d in dd], grads)
        return name_tensors([np.asarray(o) for o in outs], np.asarray(loss), passes,
                            self._stats(training, new_state), self.node_names)

    def _train_loss(self, params, buffers, x, labels, masks):
        run = JaxRun(True, masks)
        logits = self._forward(x, params, buffers, run)[-1]
        return self._loss(logits, labels), run.new_state

    def _train_setup(self):
        import optax  # here, not at import: `check` needs no optimizer

        from .jax_optim import OptaxStep

        if self.plant == "jax_warmup_from_zero":  # planted bug, tests only
            self._planted_lr = optax.linear_schedule(0.0, self.lr, self.schedule["warmup"])
        self.optimizer = OptaxStep(self.optim, self.params, self.clip, self.plant)

    def train_step(self, x, labels, *, masks=None, lr=None):
        x, labels = self._check_batch(x, labels)
        if self.optimizer is None:
            raise RuntimeError("jax: call train_setup(...) first")
        (loss, new_state), grads = self._grad(self.params, self.buffers, jnp.asarray(x),
                                              jnp.asarray(labels), self._masks(masks, len(x), True))
        lr = self.lr if lr is None else lr
        if self.plant == "jax_warmup_from_zero" and self.optimizer.t < self.schedule["warmup"]:
            lr = float(self._planted_lr(self.optimizer.t))  # 0 at the first step
        self.params = self.optimizer.update(self.params, dict(grads), lr)
        self.buffers.update(new_state)
        return float(loss)

    def predict(self, x):
        (x,) = self._check_batch(x)
        return np.asarray(self._predict(self.params, self.buffers, jnp.asarray(x)))

    def get_params(self):
        self._check_setup()
        return from_jax({k: np.asarray(v) for k, v in {**self.params, **self.buffers}.items()},
                        self.spec)
