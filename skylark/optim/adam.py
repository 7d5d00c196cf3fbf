"""Adam and AdamW, with torch's conventions (torch.optim.Adam, torch.optim.AdamW)."""

from __future__ import annotations

import math

import numpy as np

from .base import FlatOptimizer
from .checks import check_betas, check_positive


class Adam(FlatOptimizer):
    """torch.optim.Adam, step t = 1, 2, ...:

        g  <- g + weight_decay * p                    (L2, added to the gradient)
        m  <- m + (1 - beta1) * (g - m)               (exp_avg)
        v  <- beta2 * v + (1 - beta2) * g * g         (exp_avg_sq)
        v' <- max(v', v) with amsgrad, v' = v without (max_exp_avg_sq)
        p  <- p - lr / (1 - beta1^t) * m / (sqrt(v') / sqrt(1 - beta2^t) + eps)

    eps is added to the bias-corrected root. Keras and TF's ApplyAdam add it to the uncorrected
    one (sqrt(v) + eps, then scale): the same update only with eps * sqrt(1 - beta2^t) there.
    """

    buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False

    def __init__(self, model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(model, lr, weight_decay)
        self.betas = check_betas(betas)
        self.eps = check_positive("eps", eps)
        self.amsgrad = bool(amsgrad)

    def active_buffers(self) -> tuple[str, ...]:
        return self.buffers if self.amsgrad else self.buffers[:2]

    def _update(self, g: np.ndarray, entries) -> np.ndarray:
        dt, (b1, b2), t = g.dtype.type, self.betas, self.steps
        if self.decoupled:
            self._decay(entries, dt)
        else:
            g = self._l2(g, entries)
        m, v = self._buffer("exp_avg"), self._buffer("exp_avg_sq")
        m += dt(1 - b1) * (g - m)  # torch's lerp_(g, 1 - beta1)
        v *= dt(b2)
        v += dt(1 - b2) * (g * g)
        if self.amsgrad:
            v = np.maximum(self._buffer("max_exp_avg_sq"), v, out=self._buffer("max_exp_avg_sq"))
        denom = np.sqrt(v)
        denom /= dt(math.sqrt(1 - b2**t))
        denom += dt(self.eps)
        d = np.divide(m, denom, out=denom)
        d *= dt(self.lr / (1 - b1**t))
        return d

    def _decay(self, entries, dt) -> None:
        """AdamW's decoupled decay, before the step: p <- p * (1 - lr * weight_decay)."""
        if self.weight_decay:
            keep = dt(1 - self.lr * self.weight_decay)
            for _, p, _ in entries:
                p *= keep


class AdamW(Adam):
    """torch.optim.AdamW: Adam whose weight decay is decoupled from the gradient,

        p <- p * (1 - lr * weight_decay)              (first; lr times the decay, as torch)
        then Adam's step with weight_decay 0 in the gradient.

    The default weight_decay is torch's, 1e-2 (optax's adamw: 1e-4; Keras' AdamW: 4e-3).
    """

    decoupled = True

    def __init__(self, model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(model, lr, betas, eps, weight_decay, amsgrad)
