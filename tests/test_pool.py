"""MaxPool2D: finite differences and the loop oracle on a grid of options; ties (one winner per
window, the FIRST maximum in row-major order); argument errors; equivalence with every
framework."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS
from equivalence import DTYPES, INPUTS, assert_layer_matches, make_case, minimal_net

import skylark as sk
from reference.inputs import all_zero

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
    ly, _ = maxpool_forward(x, pool.kernel_size, pool.stride, pads)
    assert np.array_equal(y, ly)
    pool.forward(x)
    assert rel_error(pool.backward(cot), maxpool_backward(cot, x, pool.kernel_size,
                                                          pool.stride, pads)) <= ORACLE_RTOL


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
]
VARIANTS = list(itertools.product(DTYPES, INPUTS))


@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", POOL_CASES)
def test_pool_case_reference_tensors_are_nonzero(make, shape, batch, dtype, kind):
    """Zeros match zeros and prove nothing: every numpy tensor of a case is nonzero somewhere."""
    assert all_zero(make_case(minimal_net(make(), shape), shape, dtype, kind, batch).ref) == []


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", POOL_CASES)
def test_pool_matches_every_framework(make, shape, batch, dtype, kind, framework):
    assert_layer_matches(make(), shape, framework, dtypes=(dtype,), inputs=(kind,), batch=batch)
