"""Max-pool ties: one winner per window, the FIRST maximum in row-major order."""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk


@pytest.mark.parametrize(
    "window, winner",
    [
        ([[0.0, 0.0], [0.0, 0.0]], (0, 0)),  # flat background: all four tie
        ([[1.0, 1.0], [0.0, 1.0]], (0, 0)),
        ([[0.0, 2.0], [2.0, 2.0]], (0, 1)),
        ([[0.0, 0.0], [3.0, 3.0]], (1, 0)),
        ([[-1.0, -2.0], [-1.0, -1.0]], (0, 0)),
        ([[5.0, 4.0], [3.0, 5.0]], (0, 0)),
    ],
)
def test_tied_window_sends_gradient_to_first_max(window, winner):
    pool = sk.MaxPool2D(2)
    pool.forward(np.array(window)[None, None])
    dx = pool.backward(np.array([[[[7.0]]]]))
    expected = np.zeros((2, 2))
    expected[winner] = 7.0
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("k, s", [(2, 2), (3, 3), (3, 2), (2, 1)])
def test_constant_background_one_winner_per_window(k, s):
    """A digit-like image: -0.5 background, a bright stroke. Every window routes its gradient
    to exactly one pixel, at the position the row-major first-max rule predicts."""
    x = np.full((2, 3, 12, 12), -0.5)
    x[:, :, 4:8, 6] = 0.5
    pool = sk.MaxPool2D(k, stride=s)
    y = pool.forward(x)
    cot = np.random.default_rng(0).standard_normal(y.shape)
    dx = pool.backward(cot)
    expected = np.zeros_like(x)
    n, c, ho, wo = y.shape
    for i, ch, r, q in np.ndindex(n, c, ho, wo):
        win = x[i, ch, r * s : r * s + k, q * s : q * s + k]
        p = np.flatnonzero(win.reshape(-1) == win.max())[0]  # first max, row-major
        expected[i, ch, r * s + p // k, q * s + p % k] += cot[i, ch, r, q]
    np.testing.assert_array_equal(dx != 0, expected != 0)  # exact positions
    np.testing.assert_allclose(dx, expected, rtol=1e-15, atol=0)  # sums of overlaps: any order
    if s == k:  # non-overlapping windows: one nonzero per window, exactly
        assert np.count_nonzero(dx) == y.size


def test_relu_then_pool_ties_at_zero():
    x = -np.abs(np.random.default_rng(1).standard_normal((1, 1, 4, 4)))  # all negative
    x[0, 0, 3, 3] = 1.0
    relu, pool = sk.ReLU(), sk.MaxPool2D(2)
    pool.forward(relu.forward(x))
    d = pool.backward(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(np.argwhere(d[0, 0] != 0), [[0, 0], [0, 2], [2, 0], [3, 3]])


def test_skylark_net_on_flat_background_filter_gradient():
    """A bias-free conv on a constant background gives constant feature maps, so nearly every
    pool window ties. The first-max rule's filter gradient matches a brute-force recomputation
    that routes each window's gradient to its first maximum; the rule that routes it to every
    tied element would give one several times larger."""
    model = sk.skylark_cnn(input_shape=(1, 12, 12), dtype="float64", seed=0)
    x = np.full((3, 1, 12, 12), -0.5)
    x[:, 0, 3:9, 5:7] = 0.5
    logits = model.forward(x)
    _, d = sk.softmax_cross_entropy(logits, np.array([1, 2, 3]))
    model.zero_grad()
    model.backward(d)
    net_grad = model.grads()["0.weight"].copy()
    conv, dense = model[0], model[3]
    fmap = conv.forward(x)
    dpool = (d @ dense.weight).reshape(3, 8, 5, 5)  # d loss / d pool output, by hand
    # brute force: gradient of each pool output goes to one pixel of fmap.
    dfmap_first = np.zeros_like(fmap)
    dfmap_all = np.zeros_like(fmap)
    for i, c, r, q in np.ndindex(*dpool.shape):
        win = fmap[i, c, 2 * r : 2 * r + 2, 2 * q : 2 * q + 2].reshape(-1)
        ties = np.flatnonzero(win == win.max())
        p = ties[0]
        dfmap_first[i, c, 2 * r + p // 2, 2 * q + p % 2] += dpool[i, c, r, q]
        for p in ties:
            dfmap_all[i, c, 2 * r + p // 2, 2 * q + p % 2] += dpool[i, c, r, q]
    conv.zero_grad()
    conv.backward(dfmap_first)
    np.testing.assert_allclose(net_grad, conv.grads["weight"], rtol=1e-12)
    first = np.abs(conv.grads["weight"]).sum()
    conv.zero_grad()
    conv.backward(dfmap_all)
    assert np.abs(conv.grads["weight"]).sum() > 2 * first  # the every-tie rule inflates it
