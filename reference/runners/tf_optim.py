"""Raw TF's optimizers: TF's own training kernels, tf.raw_ops.ResourceApply*, the ops TF's
optimizers ran on before Keras 3 (which now writes its optimizers in keras.ops). Using them
keeps raw TF independent of Keras, so the two are two implementations, not one.

    SGD      ResourceApplyMomentum (accum = mu * accum + g; var -= lr * accum: torch's form,
             Nesterov included) or ResourceApplyGradientDescent without momentum
    Adam     ResourceApplyAdam / ResourceApplyAdamWithAmsgrad, eps adapted per step
             (optim_rules.uncorrected_eps: the kernel adds eps to the uncorrected root)
    AdamW    the decoupled decay var *= 1 - lr * wd (no kernel has it), then ResourceApplyAdam
    RMSprop  not expressible: ResourceApplyRMSProp takes eps inside the root

L2 weight decay is added to the gradient, dampening scales it (optim_rules), and clipping is
torch's clip_grad_norm_ in TF ops (tf.clip_by_global_norm has no +1e-6).
"""

from __future__ import annotations

import tensorflow as tf

from ..optim_rules import clip_coefs, dampening_scale, uncorrected_eps

_SLOTS = {"sgd": ("accum",), "adam": ("m", "v", "vhat"), "adamw": ("m", "v", "vhat")}


class RawOpsStep:
    """`update(grads, lr)`: one step of `config` over `variables` {name: tf.Variable}."""

    def __init__(self, config: dict, variables: dict, clip: dict | None, plant: str | None):
        self.config, self.vars, self.clip, self.plant, self.t = config, variables, clip, plant, 0
        self.slots = {k: {s: tf.Variable(tf.zeros_like(v)) for s in _SLOTS[config["name"]]}
                      for k, v in variables.items()}

    def update(self, grads: dict, lr: float) -> None:
        self.t += 1
        grads = self._clipped(grads)
        step = self._sgd if self.config["name"] == "sgd" else self._adam
        for k, g in grads.items():
            step(self.vars[k], self.slots[k], g, lr)

    def _c(self, x, like):
        return tf.constant(x, like.dtype)

    def _sgd(self, var, slots, g, lr) -> None:
        c = self.config
        if c["weight_decay"]:
            g = g + self._c(c["weight_decay"], g) * var
        damp = dampening_scale(c["dampening"], self.t)
        if damp != 1.0:
            g = g * self._c(damp, g)
        if not c["momentum"]:
            tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=self._c(lr, g), delta=g)
            return
        tf.raw_ops.ResourceApplyMomentum(
            var=var.handle, accum=slots["accum"].handle, lr=self._c(lr, g), grad=g,
            momentum=self._c(c["momentum"], g), use_nesterov=c["nesterov"])

    def _adam(self, var, slots, g, lr) -> None:
        c, t = self.config, self.t
        (b1, b2), wd = c["betas"], c["weight_decay"]
        if c["name"] == "adamw" and wd:
            keep = 1 - wd if self.plant == "tf_adamw_decay_without_lr" else 1 - lr * wd
            var.assign(var * self._c(keep, var))
        elif wd:
            g = g + self._c(wd, g) * var
        common = {"beta1_power": self._c(b1**t, g), "beta2_power": self._c(b2**t, g),
                  "lr": self._c(lr, g), "beta1": self._c(b1, g), "beta2": self._c(b2, g),
                  "epsilon": self._c(uncorrected_eps(c["eps"], b2, t), g), "grad": g}
        if c["amsgrad"]:
            tf.raw_ops.ResourceApplyAdamWithAmsgrad(
                var=var.handle, m=slots["m"].handle, v=slots["v"].handle,
                vhat=slots["vhat"].handle, **common)
        else:
            tf.raw_ops.ResourceApplyAdam(var=var.handle, m=slots["m"].handle,
                                         v=slots["v"].handle, **common)

    def _clipped(self, grads: dict) -> dict:
        if self.clip is None:
            return grads
        coefs = clip_coefs([float(tf.norm(g)) for g in grads.values()], self.clip)
        return {k: g * self._c(c, g) if c < 1 else g
                for (k, g), c in zip(grads.items(), coefs, strict=True)}
