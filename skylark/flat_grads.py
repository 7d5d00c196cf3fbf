"""One flat buffer for a model's parameter gradients: `zero_grad` is one fill, SGD one pass."""

from __future__ import annotations

import numpy as np


class FlatGrads:
    """One buffer for the gradients of a model's parameters, in `params()` order."""

    def __init__(self, buffer, layers, entries, params, declared, with_params) -> None:
        self.buffer = buffer  # (total,) the gradients, back to back
        self.layers = layers  # [(layer, [(param name, view of buffer)])], layers with params
        self.entries = entries  # [(model param name, param, slice of buffer)]
        self.params = params  # [(layer, param name, param, view)]: what the views were for
        # [(layer, name, array or None)] for every declared parameter (a bias=False included):
        # a parameter that appears, disappears or is swapped for another array is noticed
        self.declared = declared
        self.with_params = with_params  # the layers that declare parameters, in order

    def current(self, layers) -> bool:
        """Whether `layers` are the same layers holding the same parameter arrays (or None)."""
        if [layer for layer in layers if layer.param_names] != self.with_params:
            return False
        for layer, name, p in self.declared:
            if getattr(layer, name) is not p:
                return False
        return True

    def intact(self) -> bool:
        """Whether every layer's `grads[name]` is still its view of the buffer."""
        for layer, name, _, view in self.params:
            if layer.grads.get(name) is not view:  # replaced by hand or by layer.zero_grad
                return False
        return True

    @classmethod
    def build(cls, named) -> FlatGrads | None:
        """The buffer for `named` [(node name, layer)], or None (mixed dtypes, no parameters,
        or one layer in two places)."""
        layers = [layer for _, layer in named]
        params = [(node, layer, name, p) for node, layer in named
                  for name, p in layer.params().items()]
        with_params = [layer for layer in layers if layer.param_names]
        if not params or len({p.dtype for *_, p in params}) != 1 \
                or len({id(layer) for layer in with_params}) != len(with_params):  # used twice
            return None
        buffer = np.zeros(sum(p.size for *_, p in params), params[0][3].dtype)
        per_layer = {id(layer): (layer, []) for _, layer, _, _ in params}
        entries, flat_params, start = [], [], 0
        for node, layer, name, p in params:
            span = slice(start, start + p.size)
            view = buffer[span].reshape(p.shape)
            per_layer[id(layer)][1].append((name, view))
            entries.append((f"{node}.{name}", p, span))
            flat_params.append((layer, name, p, view))
            start += p.size
        declared = [(layer, n, getattr(layer, n)) for layer in with_params
                    for n in layer.param_names]
        return cls(buffer, list(per_layer.values()), entries, flat_params, declared, with_params)
