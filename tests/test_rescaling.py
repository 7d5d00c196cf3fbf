"""Rescaling: y = x * scale + offset with a number or one constant per channel, against a loop
oracle (exact: the same two roundings), float32's roundings, finite differences with random
cotangents, a Keras Normalization layer turned into one, argument and shape errors, the float32
budget, stock Keras' Python-float cast (float32-rounded in float64 on TensorFlow, kept in view),
the BatchNorm shift it passes on, and every framework."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from equivalence import equivalence_tests, make_case, minimal_net
from oracle_import import rescaling_backward, rescaling_forward

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb

# (scale, offset): numbers; per channel both; a number and a list; a negative and a zero scale
CONSTANTS = [(1 / 255, 0.0), ([0.5, -2.0, 3.0], [0.1, 0.2, -0.3]), (0.25, [1.0, -1.0, 0.5]),
             ([-1.5, 0.0, 2.0], -0.75)]


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("scale, offset", CONSTANTS, ids=str)
def test_oracle_fd_and_float32_roundings(scale, offset):
    layer = sk.Rescaling(scale, offset)
    x, cot = rand((2, 3, 4, 5)), rand((2, 3, 4, 5), seed=1)
    y = layer.forward(x)
    # the same two roundings as the oracle's x * s + o: exact
    np.testing.assert_array_equal(y, rescaling_forward(x, scale, offset))
    np.testing.assert_array_equal(layer.backward(cot), rescaling_backward(cot, scale))
    assert check_gradients(layer_fb(layer, cot), x, {})["input"] <= FD_RTOL
    x32 = x.astype(np.float32)
    y32 = layer.forward(x32)
    s32 = np.asarray(scale, np.float32).reshape(-1, 1, 1) if isinstance(scale, list) else \
        np.float32(scale)
    o32 = np.asarray(offset, np.float32).reshape(-1, 1, 1) if isinstance(offset, list) else \
        np.float32(offset)
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, x32 * s32 + o32)  # constants rounded once, then x*s, +o
    assert layer.backward(cot.astype(np.float32)).dtype == np.float32


def test_numbers_work_on_any_rank():
    layer = sk.Rescaling(2.0, 1.0)
    x = rand((3, 7))
    np.testing.assert_array_equal(layer.forward(x), x * 2 + 1)
    np.testing.assert_array_equal(layer.backward(np.ones((3, 7))), np.full((3, 7), 2.0))
    assert layer.output_shape((7,)) == (7,)


@pytest.mark.keras
def test_a_keras_normalization_layer_is_this_rescaling():
    """What an importer does with Normalization(mean, variance): scale = 1 / max(sqrt(var),
    eps), offset = -mean * scale. Keras computes (x - mean) / max(sqrt(var), eps): another
    rounding order, so within a few ulps of the magnitudes involved (4 eps64 * (|x| + |mean|)
    * scale: two roundings each side, each relative to at most that)."""
    keras = pytest.importorskip("keras")
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([0.04, 2.5, 9.0])
    x = rand((2, 4, 5, 3))  # NHWC
    norm = keras.layers.Normalization(mean=mean, variance=var, dtype="float64")
    want = keras.ops.convert_to_numpy(norm(x))
    eps = keras.backend.epsilon()
    scale = 1 / np.maximum(np.sqrt(var), eps)
    layer = sk.Rescaling(scale.tolist(), (-mean * scale).tolist())
    got = layer.forward(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    bound = 4 * np.finfo(np.float64).eps * (np.abs(x) + np.abs(mean)) * scale
    assert (np.abs(got - want) <= bound).all()


@pytest.mark.keras
def test_stock_keras_rescaling_casts_python_floats_through_float32():
    """Why the Keras builder hands Rescaling numpy arrays of its dtype: on the TensorFlow
    backend a Python float becomes float64 through float32, far above the 1e-10 bar. If this
    fails, Keras has fixed it and the workaround may go."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"the float32 round trip is the TensorFlow backend's; this is "
                    f"{keras.backend.backend()}")
    from reference.budgets import F64_RTOL

    x = rand((2, 3, 3, 2))
    stock = keras.ops.convert_to_numpy(keras.layers.Rescaling(0.1, 0.3, dtype="float64")(x))
    ours = keras.ops.convert_to_numpy(keras.layers.Rescaling(
        np.float64(0.1), np.float64(0.3), dtype="float64")(x))
    np.testing.assert_array_equal(ours, x * 0.1 + 0.3)
    assert np.abs(stock - (x * 0.1 + 0.3)).max() > 10 * F64_RTOL


@pytest.mark.parametrize("bad", [True, "1", None, float("nan"), float("inf"), [], [1.0, None],
                                 {"a": 1}])
def test_bad_constants_name_the_received_value(bad):
    with pytest.raises(ValueError, match=r"scale must be a finite number .*Received: scale="
                                         + re.escape(repr(bad))):
        sk.Rescaling(bad)
    with pytest.raises(ValueError, match=r"offset must be .*Received: offset="
                                         + re.escape(repr(bad))):
        sk.Rescaling(1.0, bad)


def test_shape_errors_name_the_received_shape():
    with pytest.raises(ValueError, match=r"one entry per channel each. Received: "
                                         r"scale=\[1, 2\], offset=\[1, 2, 3\]"):
        sk.Rescaling([1, 2], [1, 2, 3])
    layer = sk.Rescaling([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"needs a \(3, H, W\) input. Received: input shape "
                                         r"\(2, 4, 4\)"):
        layer.forward(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"Received: input shape \(3,\)"):
        layer.output_shape((3,))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 3, 2, 2)))
    layer.forward(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"\(1, 3, 2, 2\). Received: dy with shape \(1, 3, 2\)"):
        layer.backward(np.zeros((1, 3, 2)))


def test_config_is_json_and_constants_are_not_parameters():
    layer = sk.Rescaling([0.5, 2], -1)
    assert layer.config() == {"scale": [0.5, 2.0], "offset": -1.0}
    assert json.loads(json.dumps(layer.config())) == layer.config()
    assert layer.params() == {} and layer.buffers() == {}
    assert repr(layer) == "Rescaling(scale=[0.5, 2.0], offset=-1.0)"
    assert sk.Rescaling(1 / 255).config() == {"scale": 1 / 255, "offset": 0.0}


def test_float32_budget_counts_two_roundings_on_the_magnitude():
    """On the input itself (no error before it): K_SAFETY * eps32 * 1 * max(|x| |s| + |o|),
    per channel; the input gradient: the cotangent pass's count so far plus 1, on |g| |s|."""
    from reference.budgets import EPS32, K_SAFETY

    scale, offset = [0.5, -4.0], [3.0, 0.25]
    case = make_case(minimal_net(sk.Rescaling(scale, offset), (2, 3, 4)), (2, 3, 4), "float32",
                     "random", 4)
    a = np.abs(case.x.astype(np.float64))
    m = a * np.abs(np.array(scale)).reshape(2, 1, 1) + np.abs(np.array(offset)).reshape(2, 1, 1)
    assert case.budget["out.0"] == pytest.approx(K_SAFETY * EPS32 * 1 * m.max(), rel=1e-12)


def test_a_batchnorm_after_it_still_absorbs_the_shift_before_it():
    """Rescaling maps a per-channel constant to a per-channel constant: a bias before it that
    only a BatchNorm reads is still outside the loss (reference.spec.loss_invariant)."""
    from reference.spec import describe, loss_invariant

    net = sk.Sequential(sk.Conv2D(1, 2, 3, seed=1), sk.Rescaling([2.0, -1.0], 0.5),
                        sk.BatchNorm2d(2), sk.ReLU(), sk.Flatten(), sk.Dense(2 * 4 * 4, 3))
    assert loss_invariant(describe(net)) == ["0.bias", "2.running_mean"]


# --- equivalence with every framework ---------------------------------------------------------

C = sk.Conv2D
RESCALING_CASES = [
    # a Keras Normalization as an importer emits it, on the input, per channel (NHWC: the
    # constants on the last axis; NCHW: (C, 1, 1))
    pytest.param(lambda: sk.Sequential(sk.Rescaling([1 / 0.3, 1 / 1.7], [-0.1 / 0.3, 0.4 / 1.7]),
                                       C(2, 3, 3, seed=3)), (2, 5, 6), 4,
                 id="normalization_then_conv"),
    # per channel after a conv, a negative and a zero scale, then flatten -> dense
    pytest.param(lambda: sk.Sequential(C(2, 3, 3, seed=4), sk.Rescaling([-1.5, 0.0, 2.0],
                                                                        [0.1, 0.2, -0.3])),
                 (2, 6, 5), 4, id="conv_rescaling_per_channel"),
    # numbers on a flat input (the flatten order kept)
    pytest.param(lambda: sk.Sequential(sk.Flatten(), sk.Rescaling(1 / 255, -0.5)), (2, 3, 4), 4,
                 id="flatten_rescaling_numbers"),
]

test_rescaling_case_reference_tensors_are_nonzero, test_rescaling_matches_every_framework = \
    equivalence_tests(RESCALING_CASES)


@pytest.mark.onnxruntime
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_export_verifies(dtype, tmp_path):
    from conftest import needs

    from reference import porting

    needs("onnxruntime")
    net = sk.Sequential(sk.Rescaling([0.5, 2.0], [0.1, -0.2]), C(2, 3, 3, seed=3, dtype=dtype),
                        sk.Flatten(), sk.Dense(3 * 4 * 3, 5, seed=4, dtype=dtype))
    rep = porting.export_weights(net, "onnx", tmp_path / "r.onnx", input_shape=(2, 6, 5))
    assert rep["verification"]["ok"] and rep["portable"].dtype == dtype, rep["verification"]
