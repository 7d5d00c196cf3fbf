"""optax for raw JAX: each optimizer built from optax's own transforms, chained in torch's order,
with the learning rate (and what optim_rules adapts) injected per step.

    chain(add_decayed_weights(wd), scale(dampening), trace(momentum, nesterov), scale_by_lr)  SGD
    chain(add_decayed_weights(wd), scale_by_adam(b1, b2, eps), scale_by_lr)                   Adam
    chain(scale_by_adam(b1, b2, eps), add_decayed_weights(wd), scale_by_lr)                   AdamW
    chain(add_decayed_weights(wd), scale_by_rms|stddev(alpha, eps, eps_in_sqrt=False),
          trace(momentum), scale_by_lr)                                         RMSprop

optax's aliases differ from torch in three places, each adapted here: optax.rmsprop scales by
the lr BEFORE its momentum trace (torch after: the same only at a constant lr) and puts eps in
the root by default; optax.amsgrad takes the max of bias-corrected second moments (torch: of the
raw ones, corrected after), so amsgrad runs scale_by_amsgrad without the nu correction and
folds it into a scale and eps per step; optax.trace has no dampening (the gradient is scaled).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from ..optim_rules import clip_coefs, dampening_scale


def _sgd(config, plant):
    def make(learning_rate, damp):
        parts = [optax.add_decayed_weights(config["weight_decay"]), optax.scale(damp)]
        if config["momentum"]:
            parts.append(optax.trace(decay=config["momentum"], nesterov=config["nesterov"]))
        return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))

    def hyper(t, lr):
        damp = dampening_scale(config["dampening"], t)
        if plant == "jax_dampened_first_step":  # planted bug, tests only
            damp = 1.0 - config["dampening"]
        return {"learning_rate": lr, "damp": damp}

    return make, hyper


def _adam(config, plant):
    b1, b2 = config["betas"]
    decoupled = config["name"] == "adamw"
    torch_amsgrad = config["amsgrad"] and plant != "jax_amsgrad_corrected_max"

    def make(learning_rate, eps, root):
        if config["amsgrad"]:
            scale = optax.chain(
                optax.scale_by_amsgrad(b1, b2, eps, bias_correction_nu=not torch_amsgrad),
                optax.scale(root))
        else:
            scale = optax.scale_by_adam(b1, b2, eps)
        decay = optax.add_decayed_weights(config["weight_decay"])
        parts = [scale, decay] if decoupled else [decay, scale]
        return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))

    def hyper(t, lr):
        if not torch_amsgrad:
            return {"learning_rate": lr, "eps": config["eps"], "root": 1.0}
        # mu_hat / (sqrt(max v) / sqrt(bc2) + eps) = sqrt(bc2) * mu_hat / (sqrt(max v) +
        # eps * sqrt(bc2)): the raw max, its update and eps scaled by sqrt(1 - beta2^t)
        root = math.sqrt(1.0 - b2**t)
        return {"learning_rate": lr, "eps": config["eps"] * root, "root": root}

    return make, hyper


def _rmsprop(config, plant):
    alpha = 0.9 if plant == "jax_rmsprop_default_decay" else config["alpha"]  # planted: optax's
    in_sqrt = plant == "jax_rmsprop_eps_in_sqrt"  # planted bug, tests only

    def make(learning_rate):
        kind = optax.scale_by_stddev if config["centered"] else optax.scale_by_rms
        parts = [optax.add_decayed_weights(config["weight_decay"]),
                 kind(decay=alpha, eps=config["eps"], eps_in_sqrt=in_sqrt)]
        if config["momentum"]:
            parts.append(optax.trace(decay=config["momentum"]))
        return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))

    return make, lambda t, lr: {"learning_rate": lr}


BUILDERS = {"sgd": _sgd, "adam": _adam, "adamw": _adam, "rmsprop": _rmsprop}


class OptaxStep:
    """`update(params, grads, lr) -> params`: one step of `config` (optimizer_config's dict)."""

    def __init__(self, config: dict, params: dict, clip: dict | None, plant: str | None):
        make, self._hyper = BUILDERS[config["name"]](config, plant)
        self._clip, self.t = clip, 0
        self._opt = optax.inject_hyperparams(make)(**self._hyper(1, config["lr"]))
        self.state = self._opt.init(params)
        # one compiled step: the injected hyperparameters are arrays in the state, so a new lr
        # or eps needs no recompilation
        self._step = jax.jit(self._apply)

    def _apply(self, params, grads, state):
        updates, state = self._opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def update(self, params: dict, grads: dict, lr: float) -> dict:
        self.t += 1
        grads = self._clipped(grads)
        dtype = next(iter(params.values())).dtype
        for k, v in self._hyper(self.t, lr).items():
            self.state.hyperparams[k] = jnp.asarray(v, dtype)
        params, self.state = self._step(params, grads, self.state)
        return params

    def _clipped(self, grads: dict) -> dict:
        """torch's clip_grad_norm_ in jax ops (optax's clip_by_global_norm has no +1e-6)."""
        if self._clip is None:
            return grads
        coefs = clip_coefs([float(jnp.sqrt(jnp.vdot(g, g))) for g in grads.values()],
                           self._clip)
        return {k: g * jnp.asarray(c, g.dtype) if c < 1 else g
                for (k, g), c in zip(grads.items(), coefs, strict=True)}


__all__ = ["OptaxStep"]
