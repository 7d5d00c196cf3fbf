"""Every activation at its kinks with exact values, against the frameworks: exact zeros (and
-0.0) into ReLU and LeakyReLU (torch and TF send gradient 0, resp. the slope, at x == 0),
saturated Sigmoid and Tanh, softmax rows with equal and with huge logits, and max-pool windows
whose every value ties (the gradient goes to the first maximum in row-major order).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS
from equivalence import assert_equivalent, runner

import skylark as sk
from reference.harness import Case, trace_all
from reference.spec import describe

KINKS = [-1.5, -0.0, 0.0, 0.0, 2.0, -1000.0, 1000.0, 0.0, -0.25, 0.0, 0.5, 0.0]


def chain(dtype) -> sk.Sequential:
    """ReLU's zeros feed LeakyReLU at 0, whose zeros feed Tanh at 0, then Sigmoid at 0: every
    activation sees exact zeros."""
    return sk.Sequential(sk.ReLU(), sk.LeakyReLU(0.1), sk.Tanh(), sk.Sigmoid(), sk.Flatten(),
                         sk.Dense(12, 3, dtype=dtype, seed=4))


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_activation_chain_at_exact_zeros_matches_every_framework(dtype, framework):
    x = np.array([KINKS, KINKS[::-1]], dtype).reshape(2, 1, 3, 4)
    rng = np.random.default_rng(0)
    cot = rng.standard_normal((2, 3)).astype(dtype)
    model = chain(dtype)
    case = Case(describe(model), model.state(), dtype, (1, 3, 4), x, np.array([0, 2]), cot)
    # the kinks are there: ReLU passes no gradient where its input was 0, LeakyReLU the slope
    relu_in = x.reshape(2, -1) == 0
    assert np.all(case.ref["cot/d.input"].reshape(2, -1)[relu_in] == 0)
    assert np.any(case.ref["cot/d.out.0"].reshape(2, -1)[relu_in] != 0)
    got = trace_all({framework: runner(framework)}, case)[framework]
    assert_equivalent(framework, case, got, "exact zeros")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_at_equal_and_huge_logits_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    x = np.array([[0.0, 0.0, 0.0], [1000.0, 0.0, -1000.0], [-0.0, 0.0, 88.0],
                  [5.0, 5.0, -5.0]], dtype)
    cot = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0], [2.0, 1.0, -1.5],
                    [-1.0, 1.0, 4.0]], dtype)
    layer = sk.Softmax()
    y, dx = layer.forward(x), layer.backward(cot)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.softmax(xt, dim=1)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    eps = np.finfo(dtype).eps  # one exp and a division each: a few ulps of 1
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=4 * eps)
    np.testing.assert_allclose(dx, dxt.numpy(), rtol=0, atol=16 * eps)
    np.testing.assert_array_equal(y[0], np.full(3, 1 / 3, dtype))
    np.testing.assert_array_equal(y[1], [1.0, 0.0, 0.0])


@pytest.mark.torch
@pytest.mark.parametrize("kernel, stride", [((2, 3), (2, 3)), ((3, 2), (1, 2)), (2, 1)])
def test_maxpool_all_tied_windows_send_the_gradient_to_the_first_like_torch(kernel, stride):
    torch = pytest.importorskip("torch")
    x = np.zeros((1, 2, 6, 6))
    pool = sk.MaxPool2D(kernel, stride=stride)
    y = pool.forward(x)
    cot = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = pool.backward(cot)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, dxt.numpy())
    assert dx[0, 0, 0, 0] == cot[0, 0, 0, 0]  # window (0, 0): its first cell, row-major
