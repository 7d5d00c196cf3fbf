"""ReLU and Softmax: finite differences, the subgradient at 0, errors, and ReLU's equivalence
with every framework (no reference mirrors Softmax: the loss takes logits)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS
from equivalence import DTYPES, INPUTS, assert_layer_matches, make_case, minimal_net

import skylark as sk
from reference.inputs import all_zero

from gradcheck import FD_RTOL, check_gradients, layer_fb


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("layer", [sk.ReLU(), sk.Softmax()], ids=repr)
def test_activation_gradients_fd(layer):
    x = rand((4, 6))
    cot = rand(layer.forward(x).shape, seed=1)
    errors = check_gradients(layer_fb(layer, cot), x, {})
    assert errors["input"] <= FD_RTOL, errors


def test_relu_subgradient_at_zero_is_zero():
    relu = sk.ReLU()
    np.testing.assert_array_equal(relu.forward(np.array([[-1.0, 0.0, 2.0]])), [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(relu.backward(np.array([[3.0, 5.0, 7.0]])), [[0.0, 0.0, 7.0]])


def test_softmax_rows_sum_to_one():
    y = sk.Softmax().forward(rand((3, 5)) * 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-15)
    assert (y > 0).all()


def test_softmax_rejects_a_non_2d_input():
    with pytest.raises(ValueError, match=r"2-D input \(N, K\). Received: shape \(2, 3, 4\)"):
        sk.Softmax().forward(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("layer", [sk.ReLU(), sk.Softmax()], ids=repr)
def test_backward_before_forward(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 3)))


# --- equivalence with every framework (ReLU) ----------------------------------------------------
# (layer or Sequential factory, input shape (C, H, W), batch); the helper adds Flatten + Dense.
RELU_CASES = [
    pytest.param(lambda: sk.ReLU(), (2, 5, 6), 4, id="relu_on_map"),
]
VARIANTS = list(itertools.product(DTYPES, INPUTS))


@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", RELU_CASES)
def test_relu_case_reference_tensors_are_nonzero(make, shape, batch, dtype, kind):
    """Zeros match zeros and prove nothing: every numpy tensor of a case is nonzero somewhere."""
    assert all_zero(make_case(minimal_net(make(), shape), shape, dtype, kind, batch).ref) == []


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", RELU_CASES)
def test_relu_matches_every_framework(make, shape, batch, dtype, kind, framework):
    assert_layer_matches(make(), shape, framework, dtypes=(dtype,), inputs=(kind,), batch=batch)
