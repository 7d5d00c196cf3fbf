"""SGD with momentum, dampening, Nesterov and L2 weight decay, with torch's semantics."""

from __future__ import annotations

import numpy as np

from .checks import check_non_negative, check_positive
from .flat import gather


class SGD:
    """torch.optim.SGD, step by step:

        g <- g + weight_decay * p                     (L2: added to the gradient)
        v <- g                                        on the first step (undamped: torch's)
        v <- momentum * v + (1 - dampening) * g       after it
        d <- g + momentum * v   with nesterov,   d <- v   without
        p <- p - lr * d

    Without momentum, d = g. `lr` may change between steps (a schedule sets it): the velocity
    holds no lr, so a new lr applies to the whole step, as in torch (Keras' velocity holds
    -lr * v, which a schedule makes a different optimizer; see docs/design.md).

    `zero_grad()` clears the accumulated gradients, `step()` updates the parameters in place,
    exactly as `torch.optim.SGD` does, so the two stay in lockstep.

    When the model keeps its gradients in one flat buffer (`Sequential.flat_grads`), the
    momentum update runs once over that buffer and the velocity is one flat buffer too (its
    per-parameter entries in `velocity` are views of it): the same arithmetic, element by
    element, in a few numpy calls instead of four per parameter (measured: the batch-1 step
    of the Skylark net ~10% faster). Otherwise, parameter by parameter.
    """

    def __init__(self, model, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        check_positive("lr", lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum!r}")
        if not 0.0 <= dampening <= 1.0:
            raise ValueError(f"dampening must be in [0, 1]. Received: dampening={dampening!r}")
        check_non_negative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"nesterov needs momentum > 0 and dampening 0 (as torch's). "
                             f"Received: momentum={momentum!r}, dampening={dampening!r}")
        self.model, self.lr, self.momentum = model, float(lr), float(momentum)
        self.dampening, self.weight_decay = float(dampening), float(weight_decay)
        self.nesterov = bool(nesterov)
        self.velocity: dict[str, np.ndarray] = {}
        self._flat_v = None  # (flat velocity, [its per-parameter views, in entries' order])
        self._scratch = None

    def __getstate__(self) -> dict:
        # as Sequential's: a copy's velocity entries would no longer be views of its buffer
        return {**self.__dict__, "_flat_v": None, "_scratch": None}

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def step(self) -> None:
        flat = self.model.flat_grads() if hasattr(self.model, "flat_grads") else None
        if flat is not None and self._flat_step(*flat):
            return
        params, grads = self.model.params(), self.model.grads()
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:  # a new array: the model's gradient stays as backward left it
                g = g + p.dtype.type(self.weight_decay) * p
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = g.copy()
                else:
                    v *= self.momentum
                    v += self._damped(g)
                g = g + p.dtype.type(self.momentum) * v if self.nesterov else v
            p -= p.dtype.type(self.lr) * g

    def _damped(self, g: np.ndarray) -> np.ndarray:
        """(1 - dampening) * g, or g itself when dampening is 0 (no rounding, no copy)."""
        return g if not self.dampening else g.dtype.type(1 - self.dampening) * g

    def _flat_step(self, g: np.ndarray, entries: list[tuple[str, np.ndarray, slice]]) -> bool:
        """`step` over the flat gradient buffer g, entries: [(name, parameter, span of g)];
        False (nothing done) when the velocity does not cover exactly these parameters."""
        if self.weight_decay:
            g = g + g.dtype.type(self.weight_decay) * gather(entries, g)
        if self.momentum:
            v = self._flat_velocity(g, entries)
            if v is False:
                return False
            if v is None:  # the first step: v = g
                v = g.copy()
                self._adopt(v, entries)
            else:
                v *= self.momentum
                v += self._damped(g)
            g = g + g.dtype.type(self.momentum) * v if self.nesterov else v
        if self._scratch is None or self._scratch[1] is not entries:
            # lr * v lands here; its per-parameter views made once, not every step
            update = np.empty_like(g)
            self._scratch = update, entries, [update[span].reshape(p.shape)
                                              for _, p, span in entries]
        update, _, views = self._scratch
        np.multiply(g, g.dtype.type(self.lr), out=update)  # lr * v, as above
        for (_, p, _), step in zip(entries, views, strict=True):
            p -= step
        return True

    def _flat_velocity(self, g, entries) -> np.ndarray | None:
        """The flat velocity matching `entries`, gathered from `velocity` when it is not one
        already (a loaded state, or steps taken parameter by parameter); None before the
        first step; False when `velocity` has other parameters, shapes or dtypes than
        `entries` (then `step` goes parameter by parameter)."""
        if not self.velocity:
            return None
        if self._flat_v is not None and self._flat_v[0].shape == g.shape \
                and self._still_views(entries):
            return self._flat_v[0]
        # otherwise gather it, if `velocity` is exactly one array per parameter, of its shape
        # and dtype (an entry replaced by hand is taken as given, like a loaded state)
        if set(self.velocity) != {name for name, _, _ in entries} or any(
                self.velocity[name].shape != p.shape or self.velocity[name].dtype != p.dtype
                for name, p, _ in entries):
            return False
        v = np.empty_like(g)
        for name, _, span in entries:
            v[span] = self.velocity[name].reshape(-1)
        self._adopt(v, entries)
        return v

    def _still_views(self, entries) -> bool:
        """Whether `velocity` holds exactly the flat velocity's views, one per entry."""
        views = self._flat_v[1]
        if len(self.velocity) != len(entries) or len(views) != len(entries):
            return False
        velocity = self.velocity
        # a loop: ~1 us less than all(...); the lengths are equal (checked above)
        for (name, _, _), view in zip(entries, views, strict=True):
            if velocity.get(name) is not view:
                return False
        return True

    def _adopt(self, v: np.ndarray, entries) -> None:
        self.velocity = {name: v[span].reshape(p.shape) for name, p, span in entries}
        self._flat_v = (v, list(self.velocity.values()))

    def state(self) -> dict[str, np.ndarray]:
        """Momentum buffers by parameter name (for checkpoints)."""
        return {k: v.copy() for k, v in self.velocity.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.velocity = {k: np.array(v) for k, v in state.items()}
