"""RMSprop with torch's conventions (torch.optim.RMSprop)."""

from __future__ import annotations

import numpy as np

from .base import FlatOptimizer
from .checks import check_positive, check_unit


class RMSprop(FlatOptimizer):
    """torch.optim.RMSprop:

        g <- g + weight_decay * p                     (L2)
        s <- alpha * s + (1 - alpha) * g * g          (square_avg)
        a <- a + (1 - alpha) * (g - a)                (grad_avg, centered only)
        r <- sqrt(s - a * a) if centered else sqrt(s), then r <- r + eps   (eps OUTSIDE the root)
        b <- momentum * b + g / r;  p <- p - lr * b   (momentum_buffer, zeros at first)
        p <- p - lr * g / r                           (without momentum)

    Keras and TF's ApplyRMSProp put eps inside the root (g / sqrt(s + eps)), and call alpha
    rho with default 0.9 (torch: 0.99); optax's default is eps inside too.
    """

    buffers = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, model, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False) -> None:
        super().__init__(model, lr, weight_decay)
        self.alpha = check_unit("alpha", alpha)
        self.eps = check_positive("eps", eps)
        self.momentum = check_unit("momentum", momentum)
        self.centered = bool(centered)

    def active_buffers(self) -> tuple[str, ...]:
        return tuple(b for b in self.buffers if b == "square_avg"
                     or (b == "grad_avg" and self.centered)
                     or (b == "momentum_buffer" and self.momentum))

    def _update(self, g: np.ndarray, entries) -> np.ndarray:
        dt, alpha = g.dtype.type, self.alpha
        g = self._l2(g, entries)
        s = self._buffer("square_avg")
        s *= dt(alpha)
        s += dt(1 - alpha) * (g * g)
        if self.centered:
            a = self._buffer("grad_avg")
            a += dt(1 - alpha) * (g - a)  # torch's lerp_(g, 1 - alpha)
            r = s - a * a
            np.sqrt(r, out=r)
        else:
            r = np.sqrt(s)
        r += dt(self.eps)
        if self.momentum:
            b = self._buffer("momentum_buffer")
            b *= dt(self.momentum)
            b += g / r
            return b * dt(self.lr)
        d = np.divide(g, r, out=r)
        d *= dt(self.lr)
        return d
