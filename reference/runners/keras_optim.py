"""keras.optimizers for a skylark configuration, on whichever backend this Keras runs.

    SGD      keras.optimizers.SGD(momentum, nesterov): m = mu*m - lr*g; p += m (Nesterov:
             p += mu*m - lr*g). m is -lr * torch's v while lr is constant; when a schedule
             changes lr, m is rescaled by lr / previous lr first (optim_rules.velocity_rescale).
    Adam     keras.optimizers.Adam(beta_1, beta_2, amsgrad), epsilon set before every step to
             optim_rules.uncorrected_eps (Keras adds it to the uncorrected root)
    AdamW    keras.optimizers.AdamW(weight_decay): decoupled, p -= p * wd * lr, as torch's
    RMSprop  not expressible (eps inside the root)

Every hyperparameter is handed over as a numpy float64, the learning rate as a callable
returning one: a number given as the learning rate becomes a float32 variable, and on the
TensorFlow backend ops.cast(0.9, "float64") goes through float32 (0.8999999761581421), so a
float64 run would train with float32-rounded lr, momentum, betas and decay.
L2 weight decay (torch's SGD and Adam) is added to the gradient, dampening scales it, and
clipping is torch's clip_grad_norm_ in keras.ops (Keras' clipnorm and global_clipnorm divide by
max(norm, max_norm), without torch's +1e-6; clipnorm clips each variable on its own).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ..optim_rules import clip_coefs, dampening_scale, uncorrected_eps, velocity_rescale

KERAS_DEFAULT_EPS = 1e-7  # keras.optimizers.Adam's (torch's: 1e-8)


class KerasStep:
    """`update(variables, grads, lr)`: one step of `config` with a keras.optimizers optimizer."""

    def __init__(self, config: dict, variables: list, clip: dict | None, plant: str | None):
        self.config, self.clip, self.plant = config, clip, plant
        # every hyperparameter as a numpy float64 (module docstring); the plant (tests only)
        # passes Python floats, as a user would
        self._f = float if plant == "keras_float32_hyperparameters" else np.float64
        self.t, self.lr, self.previous_lr = 0, config["lr"], None
        self.opt = self._make(config, clip, plant)
        self.opt.build(variables)

    def _make(self, c: dict, clip, plant):
        clipping = {}
        if clip is not None and plant == "keras_clipnorm_per_variable":  # planted bug, tests only
            clipping = {"clipnorm": clip["max_norm"]}
        elif clip is not None and plant == "keras_global_clipnorm":  # planted bug, tests only
            clipping = {"global_clipnorm": clip["max_norm"]}
        self._manual_clip = clip is not None and not clipping
        lr = lambda: self._f(self.lr)  # noqa: E731  (float64 each step: module docstring)
        f = self._f
        if c["name"] == "sgd":
            return keras.optimizers.SGD(learning_rate=lr, momentum=f(c["momentum"]),
                                        nesterov=c["nesterov"], **clipping)
        b1, b2 = (f(b) for b in c["betas"])
        if c["name"] == "adamw":
            return keras.optimizers.AdamW(learning_rate=lr, weight_decay=f(c["weight_decay"]),
                                          beta_1=b1, beta_2=b2, amsgrad=c["amsgrad"], **clipping)
        decay = f(c["weight_decay"]) if plant == "keras_adam_decoupled_decay" else None
        return keras.optimizers.Adam(learning_rate=lr, beta_1=b1, beta_2=b2,
                                     amsgrad=c["amsgrad"], weight_decay=decay, **clipping)

    def update(self, variables: list, grads: list, lr: float) -> None:
        c = self.config
        self.t += 1
        self.previous_lr, self.lr = self.lr if self.t > 1 else None, lr
        grads = self._clipped(grads) if self._manual_clip else list(grads)
        l2 = c["weight_decay"] if c["name"] in ("sgd", "adam") else 0.0
        if l2 and self.plant != "keras_adam_decoupled_decay":
            grads = [ops.add(g, ops.multiply(ops.cast(self._f(l2), v.dtype), v.value))
                     for g, v in zip(grads, variables, strict=True)]
        if c["name"] == "sgd":
            self._sgd_adapt(variables, grads)
            damp = dampening_scale(c["dampening"], self.t)
            if damp != 1.0:
                grads = [ops.multiply(g, ops.cast(self._f(damp), g.dtype)) for g in grads]
        else:
            eps = KERAS_DEFAULT_EPS if self.plant == "keras_adam_default_eps" else c["eps"]
            if self.plant != "keras_adam_eps_uncorrected":  # planted bug, tests only
                eps = uncorrected_eps(eps, c["betas"][1], self.t)
            self.opt.epsilon = self._f(eps)
        self.opt.apply(grads, variables)

    def _sgd_adapt(self, variables, grads) -> None:
        """Keras' velocity holds lr: rescale it to this step's lr (optim_rules)."""
        scale = velocity_rescale(self.lr, self.previous_lr)
        if not self.config["momentum"] or scale == 1.0 \
                or self.plant == "keras_sgd_velocity_holds_lr":
            return
        for m in self.opt.momentums:
            m.assign(ops.multiply(m.value, ops.cast(self._f(scale), m.dtype)))

    def _clipped(self, grads) -> list:
        coefs = clip_coefs([math.sqrt(float(ops.sum(ops.square(g)))) for g in grads], self.clip)
        return [ops.multiply(g, ops.cast(self._f(k), g.dtype)) if k < 1 else g
                for g, k in zip(grads, coefs, strict=True)]
