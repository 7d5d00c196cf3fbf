"""Conv2D: finite differences and the loop oracle on a grid of options, cross-correlation,
TF's "same" padding, argument errors, and equivalence with every framework."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from equivalence import (
    equivalence_tests,
)

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error
from oracle import conv_backward, conv_forward

ORACLE_RTOL = 1e-12  # same float64 math, different summation order: a few ulps
H, W = 7, 9  # the input's spatial size: non-square on purpose

# groups=1, dilation=1: every kernel, stride and padding kind, with and without a bias
CONV_GRID = [
    dict(k=k, s=s, p=p, d=1, g=1, cin=cin, cout=2, n=n, bias=bias)
    for k, s, p, (cin, n), bias in itertools.product(
        (1, 2, 3, 5), (1, 2, 3), (0, 1, "same", "valid"), ((1, 1), (3, 4)), (True, False)
    )
]
# dilation and groups (2, and depthwise with a channel multiplier of 2), each mixed with
# square and non-square kernels, strides and dilations, int and "same"/"valid" padding; the
# loop oracle (cheap) takes every combination
DILATIONS, GROUPS, KERNELS = (1, 2, (2, 1)), (1, 2, 4), (3, (2, 3))
STRIDES, PADDINGS = (1, (2, 1), (1, 3)), ((1, 2), "same", "valid")
DG_GRID = [
    dict(k=k, s=s, p=p, d=d, g=g, cin=4, cout=8, n=2, bias=g != 2)
    for d, g, k, s, p in itertools.product(DILATIONS, GROUPS, KERNELS, STRIDES, PADDINGS)
    if (d, g) != (1, 1)  # the grid above
]
# finite differences (~50x dearer) take every (dilation, groups, kernel, padding) with one
# stride each, a Latin square: each stride still meets every dilation and padding
FD_DG_GRID = [c for c in DG_GRID if STRIDES.index(c["s"]) == (
    DILATIONS.index(c["d"]) + KERNELS.index(c["k"]) + PADDINGS.index(c["p"])) % 3]


def _cid(case):
    def text(v):
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

    return "-".join(f"{k}{text(v)}" for k, v in case.items())


def make_conv(case, seed=0):
    return sk.Conv2D(case["cin"], case["cout"], case["k"], case["s"], case["p"], case["d"],
                     case["g"], bias=case["bias"], dtype="float64", seed=seed)


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def asked(case, hw=(H, W)):
    """What the test asked for, worked out here from the requested arguments alone (not from the
    layer's attributes): stride, dilation, (top, bottom, left, right) pads and output size."""
    k, s, d = _pair(case["k"]), _pair(case["s"]), _pair(case["d"])
    pads, out = [], []
    for axis, (n, kk, ss, dd) in enumerate(zip(hw, k, s, d, strict=True)):
        span = dd * (kk - 1) + 1  # the dilated kernel's extent
        if case["p"] == "same":  # TF: ceil(n / s) outputs, the odd pixel bottom/right
            total = max((-(-n // ss) - 1) * ss + span - n, 0)
            lo, hi = total // 2, total - total // 2
        else:  # symmetric: torch's int padding; "valid" is none
            lo = hi = 0 if case["p"] == "valid" else _pair(case["p"])[axis]
        pads += [lo, hi]
        out.append((n + lo + hi - span) // ss + 1)
    return s, d, tuple(pads), tuple(out)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("case", CONV_GRID + FD_DG_GRID, ids=_cid)
def test_conv_gradients_fd(case):
    conv = make_conv(case)
    x = rand((case["n"], case["cin"], H, W))
    y = conv.forward(x)
    assert y.shape == (case["n"], case["cout"], *asked(case)[3])
    cot = rand(y.shape, seed=1)  # random cotangent: a sum would hide permutations
    errors = check_gradients(layer_fb(conv, cot), x, conv.params())
    assert set(errors) == {"input", "weight"} | ({"bias"} if case["bias"] else set())
    assert max(errors.values()) <= FD_RTOL, errors


@pytest.mark.parametrize("case", CONV_GRID + DG_GRID, ids=_cid)
def test_conv_matches_loop_oracle(case):
    conv = make_conv(case)
    kh, kw = _pair(case["k"])
    assert conv.weight.shape == (case["cout"], case["cin"] // case["g"], kh, kw)
    x = rand((case["n"], case["cin"], H, W))
    stride, dilation, pads, out = asked(case)
    y = conv.forward(x)
    assert y.shape == (case["n"], case["cout"], *out)
    want = conv_forward(x, conv.weight, conv.bias, stride, pads, dilation, case["g"])
    assert rel_error(y, want) <= ORACLE_RTOL
    cot = rand(y.shape, seed=1)
    dx = conv.backward(cot)
    ldx, ldw, ldb = conv_backward(cot, x, conv.weight, stride, pads, dilation, case["g"])
    assert rel_error(dx, ldx) <= ORACLE_RTOL
    assert rel_error(conv.grads["weight"], ldw) <= ORACLE_RTOL
    if case["bias"]:
        assert rel_error(conv.grads["bias"], ldb) <= ORACLE_RTOL


def test_depthwise_conv_is_one_filter_per_channel():
    """groups == in_channels: output channel c*M + m sees input channel c alone."""
    conv = sk.Conv2D(3, 6, 3, padding=1, groups=3, bias=False, dtype="float64", seed=0)
    x = rand((2, 3, 5, 6))
    y = conv.forward(x)
    for o in range(6):
        single = sk.Conv2D(1, 1, 3, padding=1, bias=False, dtype="float64")
        single.weight[...] = conv.weight[o : o + 1]
        np.testing.assert_allclose(y[:, o : o + 1], single.forward(x[:, o // 2 : o // 2 + 1]),
                                   rtol=0, atol=1e-14)


def test_dilated_conv_skips_pixels():
    conv = sk.Conv2D(1, 1, (1, 2), dilation=(1, 3), bias=False, dtype="float64")
    conv.weight[...] = [[[[1.0, 10.0]]]]
    x = np.arange(6.0).reshape(1, 1, 1, 6)  # taps at columns j and j + 3
    np.testing.assert_array_equal(conv.forward(x), [[[[30.0, 41.0, 52.0]]]])


def test_init_bound_uses_the_group_fan_in():
    conv = sk.Conv2D(8, 8, 3, groups=8, dtype="float64", seed=0)  # fan_in = 1 * 3 * 3
    assert 1 / 3 * 0.9 < np.abs(conv.weight).max() <= 1 / 3
    assert conv.config()["groups"] == 8 and conv.config()["dilation"] == [1, 1]


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
        (lambda: sk.Conv2D(4, 8, 3, groups=3), "groups must divide in_channels. "
                                               "Received: groups=3 with in_channels=4"),
        (lambda: sk.Conv2D(4, 6, 3, groups=4), "groups must divide out_channels. "
                                               "Received: groups=4 with out_channels=6"),
        (lambda: sk.Conv2D(4, 8, 3, groups=0), "Received: groups=0"),
        (lambda: sk.Conv2D(4, 8, 3, groups=2.0), r"Received: groups=2\.0"),
        (lambda: sk.Conv2D(4, 8, 3, groups=True), "Received: groups=True"),
        (lambda: sk.Conv2D(4, 8, 3, dilation=0), "dilation must be >= 1. Received: dilation=0"),
        (lambda: sk.Conv2D(4, 8, 3, dilation=(2, 0)), r"Received: dilation=\(2, 0\)"),
        (lambda: sk.Conv2D(4, 8, 3, dilation=1.5), "int or a pair of ints. Received: dilation=1.5"),
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
        (sk.Conv2D(1, 8, 3, dilation=(3, 1)), np.zeros((1, 1, 6, 9)),
         r"dilation=\(3, 1\) \(effective kernel \(7, 3\)\) is larger than the padded "
         r"input \(6, 9\)"),
        (sk.Conv2D(4, 8, 3, groups=2), np.zeros((1, 2, 9, 9)), r"4 input channels.*\(1, 2, 9, 9\)"),
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
    pytest.param(lambda: sk.Sequential(  # a dilated conv, then a grouped one
        sk.Conv2D(2, 4, 3, dilation=2, seed=22),
        sk.Conv2D(4, 6, (2, 3), stride=(1, 2), padding=1, groups=2, seed=24)),
                 (2, 9, 8), 4, id="k3_d2_then_k2x3_s1x2_p1_groups2"),
    pytest.param(lambda: sk.Conv2D(2, 4, (3, 2), stride=(2, 1), padding="same", dilation=(2, 3),
                                   seed=23), (2, 9, 10), 4, id="k3x2_s2x1_d2x3_same"),
    pytest.param(lambda: sk.Sequential(
        sk.Conv2D(3, 6, 3, padding="same", dilation=(1, 2), groups=3, seed=25), sk.ReLU(),
        sk.MaxPool2D(2)), (3, 8, 7), 4, id="depthwise_x2_d1x2_same_relu_pool"),
]


test_conv_case_reference_tensors_are_nonzero, test_conv_matches_every_framework = \
    equivalence_tests(CONV_CASES)
