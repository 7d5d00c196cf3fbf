"""AvgPool2D and GlobalAvgPool2D: finite differences and the loop oracle over a grid of options
(both of torch's divisors for int padding, TF's "same" and "valid"); the divisors at the
borders; argument errors; the built-in models that use them; equivalence with every framework,
and the Keras backend whose stock "same" average is wrong (kept in view)."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import framework_param
from equivalence import (
    equivalence_tests,
)

import skylark as sk
from skylark.models import build_model

from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error
from oracle import (
    avgpool_backward,
    avgpool_forward,
    global_avgpool_backward,
    global_avgpool_forward,
)

ORACLE_RTOL = 1e-12  # same float64 math, different summation order: a few ulps


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def same_pads(n, k, s):
    """TF's "same" pads (before, after) for one axis, from its documented rule."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def expected_size(n, k, s, padding):
    """The output length asked for: TF's ceil(n / s) for "same", else torch's floor rule."""
    if padding == "same":
        return math.ceil(n / s)
    p = 0 if padding == "valid" else padding
    return (n + 2 * p - k) // s + 1


# non-square kernels and strides; int padding per axis with both divisors, "same" and "valid"
AVG_GRID = [
    dict(k=k, s=s, p=p, cip=cip)
    for k, s, (p, cip) in itertools.product(
        ((2, 3), (3, 2), (3, 3)), ((1, 2), (2, 1), (3, 3)),
        (((0, 0), None), ((1, 1), True), ((1, 1), False), ((1, 0), False), ((0, 1), True),
         ("same", None), ("valid", None)))
]


def _cid(case):
    return "-".join(f"{k}{v}" for k, v in case.items())


@pytest.mark.parametrize("case", AVG_GRID, ids=_cid)
def test_avgpool_fd_oracle_and_shape(case):
    pool = sk.AvgPool2D(case["k"], stride=case["s"], padding=case["p"],
                        count_include_pad=case["cip"])
    x = rand((2, 3, 10, 11))
    y = pool.forward(x)
    per_axis = [case["p"]] * 2 if isinstance(case["p"], str) else case["p"]
    assert y.shape == (2, 3, *(expected_size(*a) for a in zip(
        (10, 11), case["k"], case["s"], per_axis, strict=True)))
    cot = rand(y.shape, seed=1)
    assert check_gradients(layer_fb(pool, cot), x, {})["input"] <= FD_RTOL
    if case["p"] == "same":
        pads = (*same_pads(10, case["k"][0], case["s"][0]),
                *same_pads(11, case["k"][1], case["s"][1]))
        include = False  # TF: the real cells only
    elif case["p"] == "valid":
        pads, include = (0, 0, 0, 0), True
    else:
        pads = (case["p"][0],) * 2 + (case["p"][1],) * 2
        include = case["cip"] is not False  # torch's default: True
    args = (case["k"], case["s"], pads, include)
    assert rel_error(y, avgpool_forward(x, *args)) <= ORACLE_RTOL
    assert rel_error(pool.backward(cot), avgpool_backward(cot, x, *args)) <= ORACLE_RTOL


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 7, 1)])
def test_global_avgpool_fd_and_oracle(shape):
    pool = sk.GlobalAvgPool2D()
    x = rand(shape)
    y = pool.forward(x)
    assert y.shape == shape[:2] and pool.output_shape(shape[1:]) == shape[1:2]
    cot = rand(y.shape, seed=1)
    assert check_gradients(layer_fb(pool, cot), x, {})["input"] <= FD_RTOL
    assert rel_error(y, global_avgpool_forward(x)) <= ORACLE_RTOL
    assert rel_error(pool.backward(cot), global_avgpool_backward(cot, x)) <= ORACLE_RTOL


# --- the divisors at the borders ----------------------------------------------------------------


def test_count_include_pad_divisors_at_the_corners():
    """A map of ones, 3x3 windows with padding 1: a corner window holds 4 real cells."""
    x = np.ones((1, 1, 3, 3))
    with_pad = sk.AvgPool2D(3, 1, 1).forward(x)[0, 0]  # torch's default: count_include_pad
    np.testing.assert_array_equal(with_pad, [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9],
                                             [4 / 9, 6 / 9, 4 / 9]])
    np.testing.assert_array_equal(sk.AvgPool2D(3, 1, 1, False).forward(x)[0, 0], np.ones((3, 3)))
    pool = sk.AvgPool2D(3, 1, 1, False)
    pool.forward(x)
    dx = pool.backward(np.ones((1, 1, 3, 3)))[0, 0]
    # the corner pixel is in 4 windows, of 4, 6, 6 and 9 real cells: 1/count from each
    np.testing.assert_allclose(dx[0, 0], 1 / 4 + 1 / 6 + 1 / 6 + 1 / 9, rtol=1e-15)


def test_same_averages_the_real_cells_only_odd_pixel_bottom_right():
    """10 pixels, window 3, stride 2: TF pads one column on the RIGHT only; the last window
    averages [8, 9] (8.5), not [8, 9, 0] nor an edge copy [8, 9, 9] (8.667)."""
    x = np.arange(10.0).reshape(1, 1, 1, 10)
    y = sk.AvgPool2D((1, 3), (1, 2), "same").forward(x)
    np.testing.assert_allclose(y.ravel(), [1, 3, 5, 7, 8.5], rtol=1e-15)
    y = sk.AvgPool2D((1, 3), (1, 2), (0, 1), count_include_pad=True).forward(x)
    np.testing.assert_allclose(y.ravel(), [1 / 3, 2, 4, 6, 8], rtol=1e-15)  # [0, 0, 1] / 3 ...


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sk.AvgPool2D(2, padding="same", count_include_pad=True),
         "Received: count_include_pad=True with padding='same'"),
        (lambda: sk.AvgPool2D(2, padding="valid", count_include_pad=False),
         "Received: count_include_pad=False with padding='valid'"),
        (lambda: sk.AvgPool2D(2, count_include_pad="no"), "Received: count_include_pad='no'"),
        (lambda: sk.AvgPool2D(3, padding=2), "Received: padding=2"),
        (lambda: sk.AvgPool2D(0), "Received: kernel_size=0"),
        (lambda: sk.AvgPool2D(2, stride=(1, 0)), r"Received: stride=\(1, 0\)"),
        (lambda: sk.AvgPool2D(2, padding="full"), "Received: padding='full'"),
    ],
)
def test_bad_arguments_name_the_received_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "layer, x, match",
    [
        (sk.AvgPool2D(3), np.zeros((1, 1, 2, 2)), r"larger than the padded input \(2, 2\)"),
        (sk.AvgPool2D(2), np.zeros((4, 4)), r"Received: input with shape \(4, 4\)"),
        (sk.GlobalAvgPool2D(), np.zeros((2, 3)), r"Received: input with shape \(2, 3\)"),
    ],
)
def test_bad_input_names_the_received_shape(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(x)


def test_global_pool_output_shape_needs_a_map():
    with pytest.raises(ValueError, match=r"Received: input shape \(5,\)"):
        sk.GlobalAvgPool2D().output_shape((5,))


@pytest.mark.parametrize("name, shape", [("lenet5", (1, 28, 28)), ("vgg-bn", (1, 28, 28)),
                                         ("vgg-bn", (3, 9, 7))])
def test_builtin_models_with_average_pools_build_and_run(name, shape):
    net = build_model(name, shape, dtype="float64")
    assert net.forward(rand((2, *shape))).shape == (2, 10)


# --- equivalence with every framework -----------------------------------------------------------
# One net per case (the helper adds Flatten + Dense where a map comes out): a conv in front gives
# the pools negative values and, on the ties input with dyadic weights, exact ties.
C, A = sk.Conv2D, sk.AvgPool2D
AVG_CASES = [
    # count_include_pad=False (torch's own; a real-cell mean in TF and Keras), then True (zero
    # padding + "valid" average), then the global mean: one run per framework
    pytest.param(lambda: sk.Sequential(C(1, 3, 3, seed=3), A((3, 2), (2, 1), (1, 1), False),
                                       A(2, 1, (1, 0)), sk.GlobalAvgPool2D()), (1, 10, 9), 4,
                 id="k3x2_p1_real_cells_then_k2_p1x0_with_pad_then_global"),
    # asymmetric TF "same" (stock Keras on the torch backend gets it wrong: see below), "valid"
    pytest.param(lambda: sk.Sequential(C(1, 2, 3, seed=5), A(3, 2, "same"),
                                       A((2, 1), 1, "valid")), (1, 12, 11), 4,
                 id="same_asym_k3_s2_then_valid"),
]


test_avgpool_case_reference_tensors_are_nonzero, test_avgpool_matches_every_framework = \
    equivalence_tests(AVG_CASES)


STOCK_SAME = """
import keras, numpy as np
x = np.arange(10, dtype="float64").reshape(1, 1, 10, 1)
y = keras.layers.AveragePooling2D((1, 3), strides=(1, 2), padding="same", dtype="float64")(x)
print(float(keras.ops.convert_to_numpy(y).ravel()[-1]))
"""


@pytest.mark.parametrize("framework", [framework_param("keras-torch", "keras-torch")])
def test_keras_torch_stock_same_average_still_replicates_the_edge(framework):
    """Why reference.kinds.avgpool2d does not use Keras' own AveragePooling2D("same") for
    asymmetric pads on the torch backend: Keras 3 pads with edge copies there and averages them
    (keras-team/keras#18452). When an upgrade fixes it (8.5, like TF and JAX), this fails: drop
    the workaround (`keras_avg_same_is_stock`)."""
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", STOCK_SAME], env=env, capture_output=True,
                         text=True, timeout=120)
    if out.returncode:
        pytest.skip(f"keras on torch unavailable: {out.stderr[-300:]}")
    assert float(out.stdout.split()[-1]) == pytest.approx((8 + 9 + 9) / 3, rel=1e-12)
