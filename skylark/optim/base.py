"""What Adam, AdamW and RMSprop share: per-parameter state kept as flat buffers, the step count,
L2 weight decay, and the state a checkpoint stores (torch's state names)."""

from __future__ import annotations

import numpy as np

from .checks import check_non_negative, check_positive
from .flat import flat_gradients, gather


class FlatOptimizer:
    """A subclass names its per-parameter `buffers` (torch's state names) and computes
    `_update(g, entries) -> d`, the (total,) step the parameters go down: p <- p - d.

    Every buffer is one flat array in the layout of the model's flat gradients (skylark.optim.
    flat), zeros before the first step, as torch's. `state()` hands them out per parameter as
    "{buffer}/{parameter}" plus "step" (the number of steps taken, which bias corrections
    read); `load_state` takes them back and the next step gathers them into flat buffers.
    """

    buffers: tuple[str, ...] = ()

    def __init__(self, model, lr: float, weight_decay: float) -> None:
        self.model = model
        self.lr = check_positive("lr", lr)
        self.weight_decay = check_non_negative("weight_decay", weight_decay)
        self.steps = 0
        self._flat: dict[str, np.ndarray] = {}  # buffer -> (total,) array
        self._layout = None  # ((name, shape), ...) of the parameters _flat follows
        self._pending: dict[str, np.ndarray] = {}  # a loaded state, gathered at the next step

    def active_buffers(self) -> tuple[str, ...]:
        """The buffers this configuration keeps (e.g. no max_exp_avg_sq without amsgrad)."""
        return self.buffers

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def step(self) -> None:
        g, entries = flat_gradients(self.model)
        layout = tuple((name, p.shape) for name, p, _ in entries)
        if layout != self._layout or self._pending:
            self._regather(g, entries, layout)
        self.steps += 1
        d = self._update(g, entries)
        for _, p, span in entries:
            p -= d[span].reshape(p.shape)

    def _l2(self, g: np.ndarray, entries) -> np.ndarray:
        """g + weight_decay * p (a new array; torch's L2 decay), or g when the decay is 0."""
        if not self.weight_decay:
            return g
        return g + g.dtype.type(self.weight_decay) * gather(entries, g)

    def _update(self, g: np.ndarray, entries) -> np.ndarray:
        raise NotImplementedError

    def _regather(self, g: np.ndarray, entries, layout) -> None:
        """Flat buffers for `entries` from the per-parameter state (a loaded one first)."""
        per_param = self._pending or self._per_parameter()
        self._flat = {}
        for buf in self.active_buffers():
            flat = np.zeros_like(g)
            for name, _, span in entries:
                v = per_param.get(f"{buf}/{name}")
                if v is not None:
                    flat[span] = np.asarray(v).reshape(-1)
            self._flat[buf] = flat
        self._layout, self._pending = layout, {}

    def _buffer(self, name: str) -> np.ndarray:
        return self._flat[name]

    def _per_parameter(self) -> dict[str, np.ndarray]:
        if self._layout is None:
            return {}
        out, start = {}, 0
        for name, shape in self._layout:
            size = int(np.prod(shape))
            for buf, flat in self._flat.items():
                out[f"{buf}/{name}"] = flat[start:start + size].reshape(shape).copy()
            start += size
        return out

    def state(self) -> dict[str, np.ndarray]:
        """{"{buffer}/{parameter}": array, "step": 0-d int64} (copies), for checkpoints."""
        state = dict(self._pending) if self._pending else self._per_parameter()
        return {**state, "step": np.array(self.steps, np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Take a `state()` back; the next step gathers it into flat buffers."""
        state = dict(state)
        self.steps = int(state.pop("step", 0))
        self._pending = {k: np.array(v) for k, v in state.items()}
        self._layout = None
