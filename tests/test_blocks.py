"""Cache blocking changes no number that matters: with the block budget shrunk to one output
row of a conv (every row its own block) or to one byte for a pool (every channel or sample its
own block) the layers
agree with the loop oracle, forward and backward (random cotangent), on random and tie-heavy
inputs, in every geometry the blocks must handle: strides, dilation, groups, padding, ceil
mode, windows that overlap. The first test shows the budget really splits the work: a test
of the blocked path that ran unblocked would pass for the wrong reason.
"""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk
import skylark.layers.blocks as blocks_module
from skylark.layers.blocks import blocks
from skylark.layers.pool import _outer_blocks, _padded_in_memory_order

from gradcheck import rel_error
from oracle import conv_backward, conv_forward, maxpool_backward, maxpool_forward

RTOL = 1e-12  # float64: blocked sums (dW, dbias, overlapping col2im) in another order, ulps


@pytest.fixture
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(blocks_module, "BLOCK_BYTES", 1)


def _row_budget(monkeypatch, conv, x):
    """Set the budget to one output row of `conv` on `x`: every row becomes its own block."""
    _, ho, wo = conv.output_shape(x.shape[1:])
    monkeypatch.setattr(blocks_module, "BLOCK_BYTES", conv._row_bytes(wo, x.shape[0]))
    assert len(conv._row_blocks(ho, wo, x.shape[0])) == ho


def _input(shape, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "ties":  # a flat background with a few bright pixels: max-pool windows tie
        x = np.zeros(shape)
        x.flat[rng.choice(x.size, x.size // 7, replace=False)] = 1.0
        return x
    return rng.standard_normal(shape)


def test_blocks_split_as_documented():
    assert blocks(5, 400_000, budget=1 << 20) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert blocks(3, 10**9, budget=1 << 20) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert blocks(4, 1, budget=1 << 20) == [slice(0, 4)]


def test_a_row_budget_splits_the_work(monkeypatch):
    conv = sk.Conv2D(2, 3, 3, dtype="float64")
    x = np.zeros((2, 2, 7, 6))
    _row_budget(monkeypatch, conv, x)  # one block per output row
    conv.forward(x)
    assert conv._cache.cols is None  # so backward rebuilds each block


def test_pool_blocks_a_channel_at_a_time(tiny_blocks):
    x = np.zeros((3, 6, 6, 4)).transpose(3, 0, 1, 2)  # (N, C, H, W), (C, H, W, N) in memory
    order, xp, _, _ = _padded_in_memory_order(x, (0, 0, 0, 0), -np.inf)
    assert order == (1, 2, 3, 0)
    assert len(_outer_blocks(xp, order)) == 3  # a block a channel


def test_default_budget_keeps_a_small_batch_whole():
    conv = sk.Conv2D(1, 8, 3)
    conv.forward(np.zeros((1, 1, 28, 28), np.float32))
    assert conv._cache.cols is not None  # one block: backward reuses forward's im2col


def test_blocking_only_where_it_pays(monkeypatch):
    """The policy of blocks.py: the Skylark net's conv at batch 256 is blocked; a conv whose
    GEMM is compute-bound (K = 72 > BLOCK_MAX_K) or whose single row exceeds twice the budget
    is not."""
    assert len(sk.Conv2D(1, 8, 3)._row_blocks(26, 26, 256)) > 1
    assert len(sk.Conv2D(8, 16, 3)._row_blocks(26, 26, 256)) == 1  # K = 8*3*3 = 72
    assert len(sk.Conv2D(16, 32, 3, groups=8)._row_blocks(26, 26, 8)) > 1  # K = 2*3*3
    assert len(sk.Conv2D(1, 6, 5)._row_blocks(28, 28, 256)) == 28  # a row: 889 KB
    assert len(sk.Conv2D(1, 6, 5)._row_blocks(28, 28, 512)) == 1  # a row: 1.7 MB


CONVS = [
    dict(in_channels=2, out_channels=4, kernel_size=3),
    dict(in_channels=2, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)),
    dict(in_channels=4, out_channels=6, kernel_size=3, dilation=(2, 1), groups=2, padding="same"),
    dict(in_channels=3, out_channels=3, kernel_size=2, stride=2, groups=3, bias=False),
    dict(in_channels=1, out_channels=2, kernel_size=5, stride=(1, 3), padding="valid"),
]


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_blocked_conv_matches_oracle(monkeypatch, cfg, kind):
    conv = sk.Conv2D(**cfg, dtype="float64", seed=1)
    x = _input((3, cfg["in_channels"], 9, 8), kind)
    _row_budget(monkeypatch, conv, x)
    y = conv.forward(x)
    pads = conv.pads(x.shape[2:])
    dil, groups = conv.dilation, conv.groups
    ref = conv_forward(x, conv.weight, conv.bias, conv.stride, pads, dil, groups)
    assert rel_error(y, ref) <= RTOL
    dy = np.random.default_rng(2).standard_normal(y.shape)  # random cotangent, not .sum()
    dx = conv.backward(dy)
    rdx, rdw, rdb = conv_backward(dy, x, conv.weight, conv.stride, pads, dil, groups)
    assert rel_error(dx, rdx) <= RTOL
    assert rel_error(conv.grads["weight"], rdw) <= RTOL
    if conv.bias is not None:
        assert rel_error(conv.grads["bias"], rdb) <= RTOL
    conv.zero_grad()
    assert conv.backward(dy, input_grad=False) is None  # the weight-only path, blocked too
    assert rel_error(conv.grads["weight"], rdw) <= RTOL


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_input_gradient_blocks_of_a_kept_im2col_match_oracle(monkeypatch, cfg, kind):
    """A conv in one forward block (im2col kept) with its input gradient forced into blocks of
    one output row (DX_BLOCK_FROM 0, DX_BLOCK_BYTES 1): overlapping rows add up in col2im."""
    monkeypatch.setattr(blocks_module, "DX_BLOCK_FROM", 0)
    monkeypatch.setattr(blocks_module, "DX_BLOCK_BYTES", 1)
    conv = sk.Conv2D(**cfg, dtype="float64", seed=1)
    x = _input((3, cfg["in_channels"], 9, 8), kind)
    y = conv.forward(x)
    assert conv._cache.cols is not None  # one forward block: the blocks are the input grad's
    pads = conv.pads(x.shape[2:])
    dy = np.random.default_rng(2).standard_normal(y.shape)
    rdx, rdw, _ = conv_backward(dy, x, conv.weight, conv.stride, pads, conv.dilation,
                                conv.groups)
    for _ in range(2):  # twice: forward's kept im2col matrix must survive the first backward
        conv.zero_grad()
        assert rel_error(conv.backward(dy), rdx) <= RTOL
        assert rel_error(conv.grads["weight"], rdw) <= RTOL


def test_input_gradient_blocks_only_past_the_threshold(monkeypatch):
    """The policy: W^T dy over DX_BLOCK_FROM goes in blocks, under it in one piece."""
    calls = []
    real = sk.Conv2D._col2im

    def spy(self, dyb, scratch, dxt, rows, wo):
        calls.append(rows)
        return real(self, dyb, scratch, dxt, rows, wo)

    monkeypatch.setattr(sk.Conv2D, "_col2im", spy)
    conv = sk.Conv2D(6, 16, 5)  # LeNet-5's second conv: K = 150, W^T dy 150*100*N*4 bytes
    for n, blocks_expected in [(128, 1), (256, 10)]:  # 7.7 MB: one block; 15.4 MB: a row each
        x = np.zeros((n, 6, 14, 14), np.float32)
        conv.backward(np.zeros_like(conv.forward(x)))
        assert len(calls) == blocks_expected, (n, calls)
        calls.clear()


POOLS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(1, 2), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, ceil_mode=True),
]


@pytest.mark.parametrize("layout", ["nchw", "conv output"])
@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("cfg", POOLS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_blocked_maxpool_matches_oracle(tiny_blocks, cfg, kind, layout):
    pool = sk.MaxPool2D(**cfg)
    x = _input((3, 4, 9, 8), kind)
    if layout == "conv output":  # (C, H, W, N) in memory: the blocks run over channels
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    y = pool.forward(x)
    pads = pool.pads(x.shape[2:])
    ref, _ = maxpool_forward(x, pool.kernel_size, pool.stride, pads, pool.dilation,
                             pool.ceil_mode)
    np.testing.assert_array_equal(y, ref)  # a max is exact: no tolerance
    dy = np.random.default_rng(3).standard_normal(y.shape)
    ref_dx = maxpool_backward(dy, x, pool.kernel_size, pool.stride, pads, pool.dilation,
                              pool.ceil_mode)
    # exact where windows do not overlap; a pixel that wins two overlapping windows gets a
    # sum, added here in another order than the oracle's: ulps
    assert rel_error(pool.backward(dy), ref_dx) <= RTOL


@pytest.mark.parametrize("tiny", [True, False], ids=["blocked", "one block"])
def test_two_backwards_add_up(monkeypatch, tiny):
    """Like torch's .grad, a second backward adds to the gradients, blocked or not, and the
    one-block path's kept im2col matrix survives the first backward."""
    conv = sk.Conv2D(2, 3, 3, padding=1, dtype="float64", seed=4)
    x = _input((2, 2, 6, 5), "random")
    if tiny:
        _row_budget(monkeypatch, conv, x)
    dy = np.random.default_rng(6).standard_normal(conv.forward(x).shape)
    dx1 = conv.backward(dy)
    once = {k: v.copy() for k, v in conv.grads.items()}
    dx2 = conv.backward(dy)
    np.testing.assert_array_equal(dx1, dx2)
    for k, v in conv.grads.items():
        assert rel_error(v, 2 * once[k]) <= RTOL, k


def test_backward_ignores_an_input_changed_after_forward(monkeypatch):
    """Several blocks: backward rebuilds im2col from the input, so the layer keeps its own
    copy when the input already had the (C, H, W, N) layout (no copy was needed in forward)."""
    conv = sk.Conv2D(3, 4, 3, dtype="float64", seed=2)
    x = np.ascontiguousarray(_input((2, 3, 7, 6), "random").transpose(1, 2, 3, 0))
    x = x.transpose(3, 0, 1, 2)  # (N, C, H, W), (C, H, W, N) in memory: the conv's own layout
    _row_budget(monkeypatch, conv, x)
    dy = np.random.default_rng(7).standard_normal(conv.forward(x).shape)
    _, want_dw, _ = conv_backward(dy, x.copy(), conv.weight, conv.stride, (0, 0, 0, 0))
    x[...] = 0  # the caller reuses its buffer before backward
    conv.backward(dy)
    assert rel_error(conv.grads["weight"], want_dw) <= RTOL
