"""Conv2D: finite differences and the loop oracle on a grid of options, cross-correlation,
TF's "same" padding, argument errors, and equivalence with every framework."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS
from equivalence import DTYPES, INPUTS, assert_layer_matches, make_case, minimal_net

import skylark as sk
from reference.inputs import all_zero

from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error
from oracle import conv_backward, conv_forward

ORACLE_RTOL = 1e-12  # same float64 math, different summation order: a few ulps

CONV_GRID = [
    dict(k=k, s=s, p=p, cin=cin, n=n, bias=bias)
    for k, s, p, (cin, n), bias in itertools.product(
        (1, 2, 3, 5), (1, 2, 3), (0, 1, "same", "valid"), ((1, 1), (3, 4)), (True, False)
    )
]


def _cid(case):
    return "-".join(f"{k}{v}" for k, v in case.items())


def make_conv(case, seed=0):
    return sk.Conv2D(case["cin"], 2, case["k"], stride=case["s"], padding=case["p"],
                     bias=case["bias"], dtype="float64", seed=seed)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("case", CONV_GRID, ids=_cid)
def test_conv_gradients_fd(case):
    conv = make_conv(case)
    x = rand((case["n"], case["cin"], 7, 9))  # non-square on purpose
    cot = rand(conv.forward(x).shape, seed=1)  # random cotangent: a sum would hide permutations
    errors = check_gradients(layer_fb(conv, cot), x, conv.params())
    assert set(errors) == {"input", "weight"} | ({"bias"} if case["bias"] else set())
    assert max(errors.values()) <= FD_RTOL, errors


@pytest.mark.parametrize("case", CONV_GRID, ids=_cid)
def test_conv_matches_loop_oracle(case):
    conv = make_conv(case)
    x = rand((case["n"], case["cin"], 7, 9))
    y = conv.forward(x)
    pads = conv.pads(x.shape[2:])
    assert rel_error(y, conv_forward(x, conv.weight, conv.bias, conv.stride, pads)) <= ORACLE_RTOL
    cot = rand(y.shape, seed=1)
    dx = conv.backward(cot)
    ldx, ldw, ldb = conv_backward(cot, x, conv.weight, conv.stride, pads)
    assert rel_error(dx, ldx) <= ORACLE_RTOL
    assert rel_error(conv.grads["weight"], ldw) <= ORACLE_RTOL
    if case["bias"]:
        assert rel_error(conv.grads["bias"], ldb) <= ORACLE_RTOL


def test_conv_is_cross_correlation_not_convolution():
    conv = sk.Conv2D(1, 1, 3, bias=False, dtype="float64")
    conv.weight[...] = np.arange(9.0).reshape(1, 1, 3, 3)
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = 1  # picks w[0, 0] under cross-correlation, w[2, 2] under convolution
    assert conv.forward(x)[0, 0, 0, 0] == 0.0


def test_same_padding_puts_odd_pixel_bottom_right():
    conv = sk.Conv2D(1, 1, 2, stride=2, padding="same")
    assert conv.pads((5, 6)) == (0, 1, 0, 0)
    assert sk.Conv2D(1, 1, 3, padding="same").pads((7, 7)) == (1, 1, 1, 1)
    assert sk.Conv2D(1, 1, 4, stride=1, padding="same").pads((6, 6)) == (1, 2, 1, 2)
    assert conv.forward(np.zeros((1, 1, 5, 6))).shape == (1, 1, 3, 3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sk.Conv2D(1, 8, 3, stride=0), "Received: stride=0"),
        (lambda: sk.Conv2D(1, 8, 3, stride=(1, -2)), r"Received: stride=\(1, -2\)"),
        (lambda: sk.Conv2D(1, 8, 3, padding=-1), "Received: padding=-1"),
        (lambda: sk.Conv2D(1, 8, 3, padding="full"), "Received: padding='full'"),
        (lambda: sk.Conv2D(1, 8, 0), "Received: kernel_size=0"),
        (lambda: sk.Conv2D(1, 8, 2.5), "Received: kernel_size=2.5"),
        (lambda: sk.Conv2D(0, 8, 3), "Received: in_channels=0"),
        (lambda: sk.Conv2D(1, 8, 3, dtype="float16"), "Received: dtype='float16'"),
    ],
)
def test_bad_arguments_name_the_received_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "layer, x, match",
    [
        (sk.Conv2D(1, 8, 3), np.zeros((1, 28, 28)), r"4-D input.*shape \(1, 28, 28\)"),
        (sk.Conv2D(3, 8, 3), np.zeros((2, 1, 9, 9)), r"3 input channels.*\(2, 1, 9, 9\)"),
        (sk.Conv2D(1, 8, 5), np.zeros((1, 1, 4, 9)), r"larger than the padded input \(4, 9\)"),
        (sk.Conv2D(1, 8, 5, padding=1), np.zeros((1, 1, 2, 9)), r"padded input \(4, 11\)"),
    ],
)
def test_bad_input_names_the_received_shape(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(x)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        sk.Conv2D(1, 1, 3).backward(np.zeros((1, 1, 1, 1)))


# --- equivalence with every framework -----------------------------------------------------------
# (layer or Sequential factory, input shape (C, H, W), batch); the helper adds Flatten + Dense.
CONV_CASES = [
    pytest.param(lambda: sk.Sequential(sk.Conv2D(1, 4, 5, 2, "same", seed=2), sk.MaxPool2D(2)),
                 (1, 11, 9), 4, id="k5_s2_same_nonsquare"),
    pytest.param(lambda: sk.Conv2D(2, 3, (2, 3), stride=(2, 1), padding="same", seed=21),
                 (2, 7, 8), 4, id="k2x3_s2x1_same"),
]
VARIANTS = list(itertools.product(DTYPES, INPUTS))


@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", CONV_CASES)
def test_conv_case_reference_tensors_are_nonzero(make, shape, batch, dtype, kind):
    """Zeros match zeros and prove nothing: every numpy tensor of a case is nonzero somewhere."""
    assert all_zero(make_case(minimal_net(make(), shape), shape, dtype, kind, batch).ref) == []


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", CONV_CASES)
def test_conv_matches_every_framework(make, shape, batch, dtype, kind, framework):
    assert_layer_matches(make(), shape, framework, dtypes=(dtype,), inputs=(kind,), batch=batch)
