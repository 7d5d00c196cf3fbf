"""Test-only perturbations of a framework's results, to prove the bars and the provenance of
every reported tensor:

    got = planted(got, "loss/d.0.weight", 1.01 * bar, ref)   # one element off by 1.01 bars
    runner = Planted(runner, "out.1", delta, ref)              # the same, inside run_check

The element moved is numpy's smallest-magnitude one, set to numpy's value + `delta`: there the
float32 spacing is tiny, so the planted error is `delta` to ~1e-7 of itself, and the
framework's own rounding at that element is replaced, not added to.
"""

from __future__ import annotations

import numpy as np

import skylark as sk

SMALL_INPUT = (1, 5, 7)  # (C, H, W) of small_net's input: non-square


def small_net(dtype: str) -> sk.Sequential:
    """A net with every kind of step in a few tensors: a non-square conv, a ReLU, a pool, a
    flatten and a dense layer (5 -> 6 rows, 7 -> 3 columns, pooled to 3 x 3, 18 features)."""
    return sk.Sequential(
        sk.Conv2D(1, 2, (2, 3), stride=(1, 2), padding=(1, 0), dtype=dtype, seed=1), sk.ReLU(),
        sk.MaxPool2D((2, 1)), sk.Flatten(), sk.Dense(18, 3, dtype=dtype, seed=2))


def planted(got: dict, tensor: str, delta: float, ref: dict) -> dict:
    """A copy of `got` whose `tensor` differs from numpy's `ref[tensor]` by `delta` at one
    element (the others keep the framework's own values)."""
    b = np.asarray(ref[tensor])
    a = np.array(got[tensor], copy=True)
    idx = int(np.argmin(np.abs(b)))
    a.flat[idx] = b.dtype.type(float(b.flat[idx]) + delta)
    return {**got, tensor: a}


class Planted:
    """A runner whose `trace` returns the wrapped runner's tensors with `planted` applied."""

    def __init__(self, runner, tensor: str, delta: float, ref: dict) -> None:
        self.runner, self.tensor, self.delta, self.ref = runner, tensor, delta, ref

    def setup(self, *args, **kwargs):
        return self.runner.setup(*args, **kwargs)

    def trace(self, *args, **kwargs) -> dict:
        return planted(self.runner.trace(*args, **kwargs), self.tensor, self.delta, self.ref)

    def versions(self) -> dict:
        return self.runner.versions()

    def close(self) -> None:  # the session's runner stays open for the other tests
        pass
