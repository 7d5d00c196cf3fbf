"""ReLU, LeakyReLU, Sigmoid, Tanh and Softmax: finite differences, the values and gradients at
the kinks (against torch on exact zeros), Sigmoid and Tanh at +-1000 without overflow, argument
errors, equivalence with every framework (no reference mirrors Softmax: the loss takes logits),
and Keras' float32 LeakyReLU slope on the TensorFlow backend."""

from __future__ import annotations

import numpy as np
import pytest
from equivalence import (
    equivalence_tests,
    make_case,
    minimal_net,
)

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


ELEMENTWISE = [sk.ReLU(), sk.LeakyReLU(0.1), sk.LeakyReLU(2.5), sk.Sigmoid(), sk.Tanh()]


@pytest.mark.parametrize("layer", [*ELEMENTWISE, sk.Softmax()], ids=repr)
def test_activation_gradients_fd(layer):
    x = rand((4, 6))
    cot = rand(layer.forward(x).shape, seed=1)
    errors = check_gradients(layer_fb(layer, cot), x, {})
    assert errors["input"] <= FD_RTOL, errors


def test_relu_subgradient_at_zero_is_zero():
    relu = sk.ReLU()
    np.testing.assert_array_equal(relu.forward(np.array([[-1.0, 0.0, 2.0]])), [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(relu.backward(np.array([[3.0, 5.0, 7.0]])), [[0.0, 0.0, 7.0]])


def test_leaky_relu_at_zero_has_value_zero_and_gradient_slope():
    """x > 0 is false at 0 (and at -0.0): the value is slope * 0 = 0, the gradient the slope,
    as in torch and TF."""
    leaky = sk.LeakyReLU(0.1)
    y = leaky.forward(np.array([[-2.0, -0.0, 0.0, 3.0]]))
    np.testing.assert_array_equal(y, [[-0.2, 0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(leaky.backward(np.array([[1.0, 2.0, 4.0, 8.0]])),
                                  [[0.1, 0.2, 0.4, 8.0]])


# ReLU and LeakyReLU are one compare and one multiply: bit-identical to torch. Sigmoid and Tanh
# are compared where their values are exact: 0 (sigmoid 1/2, tanh 0) and +-1000 (saturated).
KINK_POINTS = {"relu": [-1.5, -0.0, 0.0, 0.0, 2.0, -1000.0, 1000.0],
               "smooth": [-0.0, 0.0, 0.0, -1000.0, 1000.0]}


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer, torch_name, points", [
    (sk.ReLU(), "ReLU", "relu"), (sk.LeakyReLU(0.1), "LeakyReLU", "relu"),
    (sk.LeakyReLU(2.5), "LeakyReLU", "relu"), (sk.Sigmoid(), "Sigmoid", "smooth"),
    (sk.Tanh(), "Tanh", "smooth")], ids=lambda v: repr(v) if isinstance(v, sk.Layer) else "")
def test_exact_values_and_gradients_at_the_kinks_match_torch(layer, torch_name, points, dtype):
    torch = pytest.importorskip("torch")
    x = np.array(KINK_POINTS[points], dtype)
    cot = np.arange(1, x.size + 1, dtype=dtype) * np.array(1.25, dtype)
    module = getattr(torch.nn, torch_name)(*layer.config().values())
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    y, dx = layer.forward(x), layer.backward(cot)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, yt.detach().numpy(), err_msg=f"{layer!r} at {x}")
    np.testing.assert_array_equal(dx, dxt.numpy(), err_msg=f"{layer!r} gradient at {x}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_and_tanh_saturate_without_overflow(dtype):
    """exp(1000) overflows (float64 from 710, float32 from 89): 1 / (1 + exp(-x)) would warn
    (an error here) and the naive exp(x) / (1 + exp(x)) would give nan. Underflow to 0 is the
    right answer, so only it is allowed."""
    x = np.array([-1000.0, -100.0, -50.0, 0.0, 50.0, 100.0, 1000.0], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sig, tanh = sk.Sigmoid(), sk.Tanh()
        y, t = sig.forward(x), tanh.forward(x)
        dy, dt = sig.backward(np.ones_like(x)), tanh.backward(np.ones_like(x))
    assert y.dtype == t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y[[0, 1, 3, 4, 5, 6]], [0.0, np.exp(x[1]), 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(y[2], np.exp(-50.0), rtol=8 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(t, [-1.0, -1.0, -1.0, 0.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(dy[[0, 6]], [0.0, 0.0])
    np.testing.assert_array_equal(dt[[0, 3, 6]], [0.0, 1.0, 0.0])
    assert np.isfinite(dy).all() and np.isfinite(dt).all()


@pytest.mark.parametrize("slope", [-0.1, float("nan"), float("inf"), True, "0.1", None])
def test_leaky_relu_bad_slope_names_the_received_value(slope):
    with pytest.raises(ValueError, match=r"negative_slope must be a finite number >= 0. "
                                         rf"Received: negative_slope={slope!r}"):
        sk.LeakyReLU(slope)


def test_leaky_relu_states_its_slope():
    """torch's default slope is 0.01 and Keras' 0.3: the config always carries it."""
    assert sk.LeakyReLU().config() == {"negative_slope": 0.01}
    assert sk.LeakyReLU(0).config() == {"negative_slope": 0.0}


def test_softmax_rows_sum_to_one():
    y = sk.Softmax().forward(rand((3, 5)) * 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-15)
    assert (y > 0).all()


def test_softmax_rejects_a_non_2d_input():
    with pytest.raises(ValueError, match=r"2-D input \(N, K\). Received: shape \(2, 3, 4\)"):
        sk.Softmax().forward(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("layer", [*ELEMENTWISE, sk.Softmax()], ids=repr)
def test_backward_before_forward(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        type(layer)(**layer.config()).backward(np.zeros((1, 3)))  # a fresh one


# --- equivalence with every framework (ReLU) ----------------------------------------------------
# (layer or Sequential factory, input shape (C, H, W), batch); the helper adds Flatten + Dense.
RELU_CASES = [
    pytest.param(lambda: sk.ReLU(), (2, 5, 6), 4, id="relu_on_map"),
]


test_relu_case_reference_tensors_are_nonzero, test_relu_matches_every_framework = \
    equivalence_tests(RELU_CASES)


# LeakyReLU, Sigmoid and Tanh: on the input itself (no reduction before them, so their float32
# budget is their own evaluation's: reference.kinds.activations) and chained after a slope > 1.
ACT_CASES = [
    pytest.param(lambda: sk.LeakyReLU(0.1), (2, 5, 6), 4, id="leaky_relu_on_map"),
    pytest.param(lambda: sk.Sigmoid(), (2, 5, 6), 4, id="sigmoid_on_map"),
    pytest.param(lambda: sk.Tanh(), (2, 5, 6), 4, id="tanh_on_map"),
    pytest.param(lambda: sk.Sequential(sk.LeakyReLU(2.5), sk.Tanh(), sk.LeakyReLU(8.0),
                                       sk.Sigmoid()), (3, 4, 3), 3, id="leaky_tanh_leaky_sigmoid"),
]


test_activation_case_reference_tensors_are_nonzero, test_activation_matches_every_framework = \
    equivalence_tests(ACT_CASES)


@pytest.mark.parametrize("make, own, grad_own", [
    (sk.Sigmoid, 6, 6 * 1.0 / 0.25), (sk.Tanh, 6, 6 * 2.0 / 1.0)], ids=["sigmoid", "tanh"])
def test_float32_budget_counts_the_functions_own_evaluation(make, own, grad_own):
    """On the input nothing is reduced before the activation, so its output's float32 budget is
    its own evaluation's alone: K_SAFETY * eps32 * 6 * M (each library is within 6 eps32 |y|,
    reference.kinds.activations); 0 before, which every framework's 1-2 ulps failed. Its input
    gradient adds 6 * sensitivity / lipschitz to what the Dense below counts (cotangent pass:
    the Dense's out_features)."""
    from reference.budgets import EPS32, K_SAFETY

    case = make_case(minimal_net(make(), (2, 3, 4)), (2, 3, 4), "float32", "random", 4)
    a = np.abs(case.x.astype(np.float64))
    m = 0.25 * a + 1 if make is sk.Sigmoid else a
    assert case.budget["out.0"] == pytest.approx(K_SAFETY * EPS32 * own * m.max(), rel=1e-12)
    dense = case.spec[-1]["out_features"]
    g = np.abs(case.cotangent.astype(np.float64)) @ np.abs(case.state["2.weight"].astype(
        np.float64))
    lip = 0.25 if make is sk.Sigmoid else 1.0
    assert case.budget["cot/d.input"] == pytest.approx(
        K_SAFETY * EPS32 * (dense + grad_own) * lip * g.max(), rel=1e-12)


@pytest.mark.keras
def test_keras_reference_leaky_relu_is_exact_in_float64_where_stock_keras_is_not():
    """On the TensorFlow backend keras.layers.LeakyReLU calls tf.nn.leaky_relu, whose slope is a
    float32 attribute: 0.1 becomes 0.10000000149, |x| * 1.5e-9 off in float64, above the 1e-10
    bar. The reference's layer (keras_layers.ExactLeakyReLU) keeps the slope in float64."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"stock LeakyReLU is exact on Keras' {keras.backend.backend()} backend")
    from reference.budgets import F64_RTOL
    from reference.kinds import KINDS
    from reference.runners.keras_layers import ExactLeakyReLU
    from reference.spec import describe, geometry

    spec = describe(sk.Sequential(sk.LeakyReLU(0.1)))
    (layer,) = KINDS["leaky_relu"].keras(spec[0], geometry(spec, (1, 2, 4))[0], "float64")
    assert isinstance(layer, ExactLeakyReLU)
    x = -np.linspace(0.5, 4.0, 8).reshape(1, 2, 4, 1)
    want = x * 0.1
    ours = keras.ops.convert_to_numpy(layer(x))
    stock = keras.ops.convert_to_numpy(
        keras.layers.LeakyReLU(negative_slope=0.1, dtype="float64")(x))
    assert ours.dtype == stock.dtype == np.float64
    np.testing.assert_array_equal(ours, want)
    err = np.abs(stock - want).max()
    assert err > 10 * F64_RTOL, f"stock Keras LeakyReLU is now exact (max|a-b|={err})"
