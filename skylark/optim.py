"""SGD with momentum, with torch's semantics (dampening 0, no Nesterov)."""

from __future__ import annotations

import numpy as np


class SGD:
    """v <- momentum * v + g  (v = g on the first step);  p <- p - lr * v.

    `zero_grad()` clears the accumulated gradients, `step()` updates the parameters in place,
    exactly as `torch.optim.SGD` does, so the two stay in lockstep.
    """

    def __init__(self, model, lr: float, momentum: float = 0.0) -> None:
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a positive number. Received: lr={lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum!r}")
        self.model, self.lr, self.momentum = model, float(lr), float(momentum)
        self.velocity: dict[str, np.ndarray] = {}

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def step(self) -> None:
        params, grads = self.model.params(), self.model.grads()
        for name, p in params.items():
            g = grads[name]
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = g.copy()
                else:
                    v *= self.momentum
                    v += g
                g = v
            p -= p.dtype.type(self.lr) * g

    def state(self) -> dict[str, np.ndarray]:
        """Momentum buffers by parameter name (for checkpoints)."""
        return {k: v.copy() for k, v in self.velocity.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.velocity = {k: np.array(v) for k, v in state.items()}
