"""MaxPool2D: finite differences and the loop oracle on a grid of options (dilation and torch's
ceil_mode included); ties (one winner per window, the FIRST maximum in row-major order, dilated
windows too); argument errors; equivalence with every framework."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from equivalence import (
    equivalence_tests,
)

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error
from oracle import maxpool_backward, maxpool_forward

ORACLE_RTOL = 1e-12  # same float64 math, different summation order: a few ulps

POOL_GRID = [
    dict(k=k, s=s, p=p, c=c, n=n)
    for k, s, p, (c, n) in itertools.product((2, 3), (1, 2, 3), (0, 1), ((1, 1), (3, 4)))
]


def _cid(case):
    return "-".join(f"{k}{v}" for k, v in case.items())


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("case", POOL_GRID, ids=_cid)
def test_pool_gradients_fd_and_oracle(case):
    pool = sk.MaxPool2D(case["k"], stride=case["s"], padding=case["p"])
    x = rand((case["n"], case["c"], 8, 11))  # continuous values: no ties, no kinks under h
    y = pool.forward(x)
    cot = rand(y.shape, seed=1)
    errors = check_gradients(layer_fb(pool, cot), x, {})
    assert errors["input"] <= FD_RTOL, errors
    pads = (case["p"],) * 4
    kernel, stride = (case["k"],) * 2, (case["s"],) * 2  # as asked, not the layer's attributes
    ly, _ = maxpool_forward(x, kernel, stride, pads)
    assert np.array_equal(y, ly)
    pool.forward(x)
    assert rel_error(pool.backward(cot), maxpool_backward(cot, x, kernel, stride,
                                                          pads)) <= ORACLE_RTOL


def expected_size(n, k, s, p, d=1, ceil_mode=False):
    """torch's documented output length, from the REQUESTED arguments: floor (or ceil) of
    (n + 2p - d*(k-1) - 1) / s + 1; in ceil mode a last window starting in the right padding
    is dropped."""
    q = (n + 2 * p - d * (k - 1) - 1) / s
    out = (math.ceil(q) if ceil_mode else math.floor(q)) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


# non-square kernels, strides and paddings (every combination), each with three (dilation,
# ceil_mode) settings, on a 9x11 input
DILATED_GRID = [
    dict(k=k, s=s, p=p, d=d, ceil=ceil)
    for k, s, p, (d, ceil) in itertools.product(
        ((2, 3), (3, 2)), ((1, 2), (2, 3)), ((0, 0), (1, 1), (1, 0)),
        (((1, 1), True), ((2, 1), False), ((2, 3), True)))
]


@pytest.mark.parametrize("case", DILATED_GRID, ids=_cid)
def test_dilated_ceil_pool_fd_oracle_and_shape(case):
    pool = sk.MaxPool2D(case["k"], stride=case["s"], padding=case["p"], dilation=case["d"],
                        ceil_mode=case["ceil"])
    x = rand((2, 3, 9, 11))
    y = pool.forward(x)
    sizes = zip((9, 11), case["k"], case["s"], case["p"], case["d"], strict=True)
    assert y.shape == (2, 3, *(expected_size(*a, case["ceil"]) for a in sizes))
    cot = rand(y.shape, seed=1)
    assert check_gradients(layer_fb(pool, cot), x, {})["input"] <= FD_RTOL
    pads = (case["p"][0], case["p"][0], case["p"][1], case["p"][1])
    args = (case["k"], case["s"], pads, case["d"], case["ceil"])
    assert np.array_equal(y, maxpool_forward(x, *args)[0])
    pool.forward(x)
    assert rel_error(pool.backward(cot), maxpool_backward(cot, x, *args)) <= ORACLE_RTOL


@pytest.mark.parametrize("n, k, s, p, ceil, expected", [
    (6, 3, 2, 0, False, 2),
    (6, 3, 2, 0, True, 3),  # the last window covers rows 4, 5 and one row past the input
    (5, 2, 2, 1, True, 3),  # ceil gives 4, but the 4th window would start in the padding
    (1, 2, 2, 0, True, 1),  # the window is larger than the input: torch still pools it
    (7, 2, 3, 1, True, 3),
])
def test_ceil_mode_output_size_is_torchs(n, k, s, p, ceil, expected):
    assert expected_size(n, k, s, p, 1, ceil) == expected
    x = rand((1, 1, n, n))
    y = sk.MaxPool2D(k, s, p, ceil_mode=ceil).forward(x)
    assert y.shape == (1, 1, expected, expected)
    assert np.array_equal(y, maxpool_forward(x, (k, k), (s, s), (p,) * 4, ceil_mode=ceil)[0])


# --- ties -----------------------------------------------------------------------------------


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


def test_dilated_tied_window_sends_gradient_to_first_max():
    """k=2, dilation 2: the window's taps are (0,0), (0,2), (2,0), (2,2), in that order."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 2] = x[0, 0, 2, 0] = x[0, 0, 2, 2] = 1.0
    x[0, 0, 1, 1] = 5.0  # not a tap of the window: never wins
    pool = sk.MaxPool2D(2, dilation=2)
    assert pool.forward(x)[0, 0, 0, 0] == 1.0
    dx = pool.backward(np.array([[[[7.0]]]]))
    expected = np.zeros((3, 3))
    expected[0, 2] = 7.0
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("k, s, p, d, ceil", [
    ((2, 3), (1, 2), (1, 1), (2, 1), True), (3, 1, 1, 2, False), ((3, 2), 2, 0, (1, 3), True),
])
def test_dilated_pool_ties_first_max_matches_oracle(k, s, p, d, ceil):
    """Values in {0, 1, 2}: almost every window ties. Exact winner positions, one per window."""
    x = np.random.default_rng(3).integers(0, 3, (2, 2, 10, 9)).astype(float)
    pool = sk.MaxPool2D(k, s, p, d, ceil)
    y = pool.forward(x)
    cot = np.random.default_rng(4).standard_normal(y.shape)
    dx = pool.backward(cot)
    ph, pw = (p, p) if isinstance(p, int) else p
    as_pair = [(v, v) if isinstance(v, int) else v for v in (k, s, d)]
    args = (as_pair[0], as_pair[1], (ph, ph, pw, pw), as_pair[2], ceil)
    np.testing.assert_array_equal(y, maxpool_forward(x, *args)[0])
    expected = maxpool_backward(cot, x, *args)
    np.testing.assert_array_equal(dx != 0, expected != 0)  # exact positions
    np.testing.assert_allclose(dx, expected, rtol=1e-15, atol=0)


def test_relu_then_pool_ties_at_zero():
    x = -np.abs(np.random.default_rng(1).standard_normal((1, 1, 4, 4)))  # all negative
    x[0, 0, 3, 3] = 1.0
    relu, pool = sk.ReLU(), sk.MaxPool2D(2)
    pool.forward(relu.forward(x))
    d = pool.backward(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(np.argwhere(d[0, 0] != 0), [[0, 0], [0, 2], [2, 0], [3, 3]])


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sk.MaxPool2D(2, stride=0), "Received: stride=0"),
        (lambda: sk.MaxPool2D(2, padding=-1), "Received: padding=-1"),
        (lambda: sk.MaxPool2D(2, padding=2), "Received: padding=2"),
        (lambda: sk.MaxPool2D(2, padding=2, dilation=3), "Received: padding=2"),  # torch's rule
        (lambda: sk.MaxPool2D(2, dilation=0), "Received: dilation=0"),
        (lambda: sk.MaxPool2D(2, dilation=(1, 2, 3)), r"Received: dilation=\(1, 2, 3\)"),
        (lambda: sk.MaxPool2D(2, ceil_mode="yes"), "Received: ceil_mode='yes'"),
        (lambda: sk.MaxPool2D(2, padding="same", ceil_mode=True),
         "Received: ceil_mode=True with padding='same'"),
        (lambda: sk.MaxPool2D(2, padding="valid", ceil_mode=True),
         "Received: ceil_mode=True with padding='valid'"),
    ],
)
def test_bad_arguments_name_the_received_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "layer, x, match",
    [
        (sk.MaxPool2D(3), np.zeros((1, 1, 2, 2)), r"larger than the padded input \(2, 2\)"),
        (sk.MaxPool2D(2), np.zeros((4, 4)), r"Received: input with shape \(4, 4\)"),
        (sk.MaxPool2D(2, dilation=3), np.zeros((1, 1, 3, 3)),
         r"larger than the padded input \(3, 3\)"),
        # taps at -1 and 2 of a 1-pixel input: torch outputs -inf here, skylark refuses
        (sk.MaxPool2D(2, 2, 1, dilation=3, ceil_mode=True), np.zeros((1, 1, 1, 1)),
         r"window 0 along H covers only padding.*Received: input spatial size \(1, 1\)"),
    ],
)
def test_bad_input_names_the_received_shape(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(x)


# --- equivalence with every framework -----------------------------------------------------------
# (layer or Sequential factory, input shape (C, H, W), batch); the helper adds Flatten + Dense.
# A conv in front gives the pool negative values (-inf padding, not 0) and, on the ties input
# with dyadic weights, tied windows in every framework.
C, P, R = sk.Conv2D, sk.MaxPool2D, sk.ReLU
POOL_CASES = [
    pytest.param(lambda: P((3, 2), stride=(1, 2), padding=(1, 1)), (2, 7, 8), 4,
                 id="k3x2_s1x2_p1x1"),
    pytest.param(lambda: sk.Sequential(C(2, 3, 3, 2, seed=5), P(2, 1, 1)), (2, 10, 8), 1,
                 id="k3_s2_valid_pool2s1p1_negative"),
    pytest.param(lambda: sk.Sequential(C(1, 2, 3, seed=6), P(2, 2, "same")), (1, 9, 9), 4,
                 id="pool_same_asym"),
    pytest.param(lambda: sk.Sequential(C(1, 2, 3, seed=7), P(3, 2, "same")), (1, 10, 9), 4,
                 id="pool3_s2_same_asym"),
    pytest.param(lambda: sk.Sequential(C(1, 3, 3, 1, 1, seed=4), R(), P(3, 2, 1)), (1, 8, 8), 4,
                 id="int_pad_relu_pool3s2p1"),
    # dilated taps (running max with a strict > in TF/Keras), torch's ceil_mode (extra -inf rows
    # and columns in TF/Keras) dilated and not, ReLU ties at 0: one net, one run per framework
    pytest.param(lambda: sk.Sequential(C(1, 2, 3, seed=3), R(), P((2, 3), (1, 2), (1, 1), (2, 1),
                                                               ceil_mode=True),
                                       P(3, 2, 1, ceil_mode=True)), (1, 12, 13), 4,
                 id="relu_dilated2x1_ceil_then_k3_s2_p1_ceil"),
    pytest.param(lambda: sk.Sequential(C(1, 2, 3, seed=9), P(3, 2, "same", dilation=2)),
                 (1, 9, 10), 4, id="dilated2_same_k3_s2"),
]


test_pool_case_reference_tensors_are_nonzero, test_pool_matches_every_framework = \
    equivalence_tests(POOL_CASES)
