"""ReLU6, Hardsigmoid and Hardswish: finite differences with random cotangents, the loop oracle,
the exact values and gradients at every kink (0 and 6; -3 and 3) against torch and against
every framework, dtypes, errors, equivalence with every framework (away from and across the
kinks), and the two stock implementations that are not exact in float64 (torch's Hardsigmoid
backward, on its own and under Keras' torch backend) kept in view."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS, framework_param
from equivalence import assert_equivalent, equivalence_tests, runner
from oracle_mobile import (
    hardsigmoid_backward,
    hardsigmoid_forward,
    hardswish_backward,
    hardswish_forward,
    relu6_backward,
    relu6_forward,
)

import skylark as sk
from reference.harness import Case, trace_all
from reference.spec import describe

from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error

HARD = {"relu6": (sk.ReLU6, relu6_forward, relu6_backward),
        "hardsigmoid": (sk.Hardsigmoid, hardsigmoid_forward, hardsigmoid_backward),
        "hardswish": (sk.Hardswish, hardswish_forward, hardswish_backward)}
TORCH_NAMES = {"relu6": "ReLU6", "hardsigmoid": "Hardsigmoid", "hardswish": "Hardswish"}
# every kink of every one, both zeros, and points on each linear piece
KINKS = [-7.0, -6.0, -3.0, -2.0, -0.0, 0.0, 1.5, 2.5, 3.0, 4.0, 6.0, 7.5]


def rand(shape, seed=0, scale=3.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


@pytest.mark.parametrize("name", HARD)
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 5)])
def test_fd_grid_and_loop_oracle(name, shape):
    """Random cotangents, x ~ N(0, 3^2) across every piece (no sample within 1e-5 of a kink)."""
    make, forward, backward = HARD[name]
    x = rand(shape)
    layer = make()
    y = layer.forward(x)
    cot = rand(y.shape, seed=1, scale=1.0)
    assert check_gradients(layer_fb(layer, cot), x, {})["input"] <= FD_RTOL
    assert rel_error(y, forward(x)) <= 1e-15
    layer.forward(x)
    assert rel_error(layer.backward(cot), backward(cot, x)) <= 1e-15
    assert y.shape == x.shape and layer.output_shape(x.shape[1:]) == x.shape[1:]


@pytest.mark.parametrize("name", HARD)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept_and_the_kinks_are_exact(name, dtype):
    make, forward, backward = HARD[name]
    x = np.array([KINKS], dtype)
    cot = np.arange(1.0, x.size + 1).reshape(x.shape).astype(dtype)
    layer = make()
    y, dx = layer.forward(x), layer.backward(cot)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, forward(x).astype(dtype))
    np.testing.assert_allclose(dx, backward(cot, x), rtol=2 * np.finfo(dtype).eps, atol=0)


def test_the_gradient_at_each_kink_written_out():
    """ReLU6: 0 at 0 AND at 6 (hardtanh_backward is strict at both ends). Hardsigmoid: 0 at -3
    and 3, 1/6 between. Hardswish (torch 2.13): 0 at -3, x/3 + 1/2 between, 1 at 3 (torch up
    to 2.6 gave -1/2 and 3/2 there)."""
    x = np.array([[-3.0, -0.0, 0.0, 1.5, 3.0, 6.0]])
    ones = np.ones_like(x)
    got = {}
    for name, (make, _, _) in HARD.items():
        layer = make()
        layer.forward(x)
        got[name] = layer.backward(ones)[0].tolist()
    assert got["relu6"] == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert got["hardsigmoid"] == [0.0, 1 / 6, 1 / 6, 1 / 6, 0.0, 0.0]
    assert got["hardswish"] == [0.0, 0.5, 0.5, 1.0, 1.0, 1.0]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", HARD)
def test_values_and_gradients_at_the_kinks_match_torch(name, dtype):
    """Bit for bit: the same comparisons and the same order of operations as torch's kernels;
    Hardsigmoid's gradient to a float32 1/6 (torch's, see the next test)."""
    torch = pytest.importorskip("torch")
    make = HARD[name][0]
    x = np.array(KINKS * 2, dtype)
    cot = (np.arange(1, x.size + 1) * 1.25).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn, TORCH_NAMES[name])()(xt)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    layer = make()
    y, dx = layer.forward(x), layer.backward(cot)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx == 0, dxt.numpy() == 0)  # the same kinks pass nothing
    if name == "hardsigmoid":  # dy / 6 against dy * float32(1/6): one float32 ulp apart
        np.testing.assert_allclose(dx, dxt.numpy(), rtol=float(np.finfo(np.float32).eps),
                                   atol=0)
    else:
        np.testing.assert_array_equal(dx, dxt.numpy())


@pytest.mark.torch
def test_torch_hardswish_kinks_are_the_installed_torchs():
    """torch changed these in 2.7 (pytorch/pytorch#147801, #148049): -0.5 and 1.5 before, 0 and
    1 now, which skylark follows. If torch changes them again, this fails first."""
    torch = pytest.importorskip("torch")
    xt = torch.tensor([-3.0, 3.0], dtype=torch.float64, requires_grad=True)
    (dxt,) = torch.autograd.grad(torch.nn.functional.hardswish(xt).sum(), xt)
    assert dxt.tolist() == [0.0, 1.0]


@pytest.mark.torch
def test_stock_torch_hardsigmoid_gradient_is_float32_in_float64():
    """Why reference.runners.torch_layers.Hardsigmoid exists: torch's hardsigmoid_backward
    multiplies by a float32 1/6 in every dtype, 5e-9 off per unit of dy in float64 (the bar is 1e-10
    relative). When torch fixes it, this fails: drop the workaround."""
    torch = pytest.importorskip("torch")
    from reference.budgets import F64_RTOL
    from reference.runners.torch_layers import Hardsigmoid

    x = np.linspace(-2.5, 2.5, 11)
    for module, exact in ((torch.nn.Hardsigmoid(), False), (Hardsigmoid(), True)):
        xt = torch.tensor(x, requires_grad=True)
        (dxt,) = torch.autograd.grad(module(xt).sum(), xt)
        err = np.abs(dxt.numpy() - 1 / 6).max()
        assert (err == 0.0) if exact else (err > 10 * F64_RTOL / 6), (module, err)
    xt = torch.tensor(np.array(KINKS), requires_grad=True)
    (dxt,) = torch.autograd.grad(Hardsigmoid()(xt).sum(), xt)
    layer = sk.Hardsigmoid()
    layer.forward(np.array(KINKS))
    np.testing.assert_array_equal(dxt.numpy(), layer.backward(np.ones(len(KINKS))))


STOCK_HARD_SIGMOID = """
import keras, numpy as np, torch
x = torch.tensor(np.linspace(-2.5, 2.5, 11), requires_grad=True)
keras.ops.hard_sigmoid(x).sum().backward()
print(float(np.abs(x.grad.numpy() - 1 / 6).max()))
"""


@pytest.mark.slow  # a fresh Keras on torch in a subprocess: ~5 s
@pytest.mark.parametrize("framework", [framework_param("keras-torch", "keras-torch")])
def test_keras_torch_stock_hard_sigmoid_is_float32_in_float64(framework):
    """Keras' hard_sigmoid on the torch backend is F.hardsigmoid (above): so in float64 the
    reference uses keras_layers.ExactHardsigmoid there. Fails when Keras or torch fixes it."""
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", STOCK_HARD_SIGMOID], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode:
        pytest.skip(f"keras on torch unavailable: {out.stderr[-300:]}")
    assert float(out.stdout.split()[-1]) > 1e-9


@pytest.mark.parametrize("name", HARD)
def test_errors_name_the_received_value(name):
    layer = HARD[name][0]()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((2, 3)))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"gradient of the output's shape \(2, 3\). "
                                          r"Received: dy with shape \(1, 3\)"):
        layer.backward(np.zeros((1, 3)))
    with pytest.raises(TypeError):
        type(layer)(6)  # no arguments: nothing to state in the spec
    assert layer.config() == {} and repr(layer) == f"{type(layer).__name__}()"


# --- every framework at the kinks ----------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", HARD)
def test_exact_kinks_into_every_framework(name, dtype, framework):
    """The activation on the input itself, every value of KINKS in it: each framework's forward
    and both backward passes match numpy's, so its gradient at 0, 6, -3 and 3 is torch's."""
    x = np.array([KINKS, KINKS[::-1]], dtype).reshape(2, 1, 3, 4)
    model = sk.Sequential(HARD[name][0](), sk.Flatten(), sk.Dense(12, 3, dtype=dtype, seed=4))
    cot = np.random.default_rng(0).standard_normal((2, 3)).astype(dtype)
    case = Case(describe(model), model.state(), dtype, (1, 3, 4), x, np.array([0, 2]), cot)
    kink = {"relu6": [0.0, 6.0], "hardsigmoid": [-3.0, 3.0], "hardswish": [-3.0]}[name]
    at = np.isin(x.reshape(2, -1), kink)
    assert at.sum() >= 2 and np.all(case.ref["cot/d.input"].reshape(2, -1)[at] == 0)
    assert np.any(case.ref["cot/d.out.0"].reshape(2, -1)[at] != 0)  # dy was there
    got = trace_all({framework: runner(framework)}, case)[framework]
    assert_equivalent(framework, case, got, "exact kinks")


# --- equivalence with every framework -------------------------------------------------------

def _wide_conv(cin, cout, seed):
    """A conv whose outputs spread over about +-8 (weights x 20): every piece of every
    activation is reached, 0, 6 and +-3 crossed (on the ties input exactly)."""
    conv = sk.Conv2D(cin, cout, 3, seed=seed)
    conv.weight *= 20
    return conv


HARD_CASES = [
    # on the input itself: nothing reduced before, the budget is the activation's own
    pytest.param(lambda: sk.Hardswish(), (2, 5, 6), 4, id="hardswish_on_map"),
    pytest.param(lambda: sk.Hardsigmoid(), (2, 5, 6), 4, id="hardsigmoid_on_map"),
    # conv -> activation across all the pieces, then (helper) flatten -> dense
    pytest.param(lambda: sk.Sequential(_wide_conv(2, 3, 3), sk.ReLU6()), (2, 6, 5), 4,
                 id="conv_relu6"),
    pytest.param(lambda: sk.Sequential(_wide_conv(2, 3, 5), sk.Hardswish(),
                                       sk.Conv2D(3, 2, 1, seed=6), sk.Hardsigmoid()),
                 (2, 6, 5), 4, id="conv_hardswish_conv_hardsigmoid"),
]

test_hard_case_reference_tensors_are_nonzero, test_hard_matches_every_framework = \
    equivalence_tests(HARD_CASES)
