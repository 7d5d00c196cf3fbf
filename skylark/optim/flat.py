"""The flat-buffer layout the optimizers share: every parameter back to back, in `params()`
order, so one update is a few numpy calls over one array instead of a few per parameter."""

from __future__ import annotations

import numpy as np


def gather(entries, like: np.ndarray) -> np.ndarray:
    """The parameters of `entries` [(name, parameter, span)] back to back: (total,), `like`'s
    dtype (a new array)."""
    out = np.empty_like(like)
    for _, p, span in entries:
        out[span] = p.reshape(-1)
    return out


def flat_gradients(model) -> tuple[np.ndarray, list]:
    """(g, entries): the model's flat gradient buffer (`Graph.flat_grads`: the live buffer,
    which clipping scales in place) or, for a model without one (mixed dtypes, a layer used
    twice), a copy gathered parameter by parameter, in the widest dtype."""
    flat = model.flat_grads() if hasattr(model, "flat_grads") else None
    if flat is not None:
        return flat
    params, grads = model.params(), model.grads()
    dtype = np.result_type(*params.values()) if params else np.float32
    entries, start = [], 0
    for name, p in params.items():
        entries.append((name, p, slice(start, start + p.size)))
        start += p.size
    g = np.empty(start, dtype)
    for name, _, span in entries:
        g[span] = grads[name].reshape(-1)
    return g, entries
