"""Conv2D and MaxPool2D remember their plan (output size, padding, memory order, blocks) for
the last input they saw. One layer instance, fed inputs that differ in only one thing the plan
depends on (the memory layout, the shape, the dtype, the block budget, an option changed on
the instance), must compute what a fresh instance computes: a stale plan would be silently
wrong numbers. Each case alternates, so the second call of a kind meets the other's plan.
"""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk
import skylark.layers.blocks as blocks_module
from skylark.layers.pool import _memory_order


def _twin(layer):
    """A fresh layer of the same configuration (and the same parameters)."""
    fresh = type(layer)(**layer.config(), **({"dtype": layer.dtype} if layer.param_names else {}))
    for name in layer.param_names:
        if getattr(layer, name) is not None:
            getattr(fresh, name)[...] = getattr(layer, name)
    return fresh


def _inputs(shape, dtype=np.float64, seed=0):
    """The same values in three memory layouts: NCHW, (C, H, W, N) and (H, W, N, C)."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    chwn = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    hwnc = np.ascontiguousarray(x.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)
    return [x, chwn, hwnc]


def _same_as_fresh(layer, x, seed=1):
    """layer (reused) and a fresh twin agree on forward and on backward with a random
    cotangent, bit for bit (the same plan makes the same calls)."""
    fresh = _twin(layer)
    y, y_fresh = layer.forward(x), fresh.forward(x)
    assert np.array_equal(y, y_fresh)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    if layer.param_names:
        layer.zero_grad()
    dx, dx_fresh = layer.backward(dy), fresh.backward(dy)
    assert np.array_equal(dx, dx_fresh)
    for name, g in fresh.grads.items():
        assert np.array_equal(layer.grads[name], g), name


@pytest.mark.parametrize("pool", [sk.MaxPool2D(2), sk.MaxPool2D(3, stride=2, padding=1),
                                  sk.MaxPool2D(2, ceil_mode=True)], ids=repr)
def test_maxpool_plan_follows_layout_shape_and_dtype(pool):
    seen = []
    for shape, dtype in [((3, 4, 7, 6), np.float64), ((3, 4, 7, 6), np.float32),
                         ((2, 4, 9, 8), np.float64)]:
        for x in _inputs(shape, dtype) + _inputs(shape, dtype)[::-1]:
            _same_as_fresh(pool, x)
            # a stale order would still give the right numbers, slowly: the pool must work in
            # the memory order of the input it has now
            assert pool._cache.order == _memory_order(x)
            seen.append((x.strides, x.dtype))
    assert len(set(seen)) == 9  # every layout of every shape and dtype was met


def test_maxpool_plan_follows_the_block_budget(monkeypatch):
    pool, chwn = sk.MaxPool2D(2), _inputs((3, 4, 8, 8))[1]
    for budget in (1 << 19, 1, 1 << 19, 1):
        monkeypatch.setattr(blocks_module, "BLOCK_BYTES", budget)
        _same_as_fresh(pool, chwn)
        assert len(pool._cache.parts) == (1 if budget > 1 else 4)  # one block, or a channel each


def test_maxpool_plan_follows_options_changed_on_the_instance():
    pool, x = sk.MaxPool2D(2), _inputs((2, 3, 7, 7))[1]
    _same_as_fresh(pool, x)
    pool.ceil_mode = True  # an attribute set after construction is part of the plan
    _same_as_fresh(pool, x)
    assert pool.forward(x).shape == (2, 3, 4, 4)


def test_conv_plan_follows_shape_layout_and_budget(monkeypatch):
    conv = sk.Conv2D(2, 3, 3, padding=1, dtype="float64", seed=0)
    for shape in [(2, 2, 6, 5), (3, 2, 7, 7), (2, 2, 6, 5)]:
        for x in _inputs(shape):
            _same_as_fresh(conv, x)
    x = _inputs((2, 2, 6, 5))[0]
    row = conv._row_bytes(5, 2)  # a budget of one output row: a block per row
    for budget, blocks in [(1 << 19, 1), (row, 6), (1 << 19, 1), (row, 6)]:
        monkeypatch.setattr(blocks_module, "BLOCK_BYTES", budget)
        _same_as_fresh(conv, x)
        assert len(conv._cache.row_blocks) == blocks


def test_conv_plan_follows_options_changed_on_the_instance():
    conv, x = sk.Conv2D(1, 2, 3, dtype="float64", seed=0), _inputs((2, 1, 7, 7))[0]
    assert conv.forward(x).shape == (2, 2, 5, 5)
    conv.padding = (1, 1)  # (the checked form __init__ stores)
    _same_as_fresh(conv, x)
    assert conv.forward(x).shape == (2, 2, 7, 7)
