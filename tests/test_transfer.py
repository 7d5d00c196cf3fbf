"""Weight transfer (reference.transfer) and the runners' use of it: bit-exact round trips, the
CHW <-> HWC dense permutation, misshaped and missing weights named, and lockstep SGD
(train_step) in every framework."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS, TRAINING_PARAMS

import skylark as sk
from reference import transfer
from reference.runners.registry import get_runner
from reference.spec import build, describe, shapes

INPUT = (2, 9, 8)


def model(dtype="float64"):
    """Non-square kernel, non-square map, C > 1 before Flatten: every axis mix-up shows."""
    conv = sk.Conv2D(2, 3, (3, 2), padding="same", stride=2, dtype=dtype, seed=1)
    pool = sk.MaxPool2D(2, 1)
    feat = int(np.prod(pool.output_shape(conv.output_shape(INPUT))))
    return sk.Sequential(conv, sk.ReLU(), pool, sk.Flatten(), sk.Dense(feat, 4, dtype=dtype,
                                                                         seed=2))


def test_spec_round_trip():
    m = model()
    spec = describe(m)
    assert describe(build(spec, "float64")) == spec
    assert shapes(spec, INPUT)[-1] == (4,)


def test_to_keras_from_keras_bit_exact_and_permutes_rows():
    m = model()
    spec, params = describe(m), m.params()
    k = transfer.to_keras(params, spec, INPUT)
    back = transfer.from_keras(k, spec, INPUT)
    assert all(np.array_equal(back[n], params[n]) for n in params)
    assert k["0.kernel"].shape == (3, 2, 2, 3)  # (kh, kw, I, O)
    # the permutation is the right one: an NHWC map flattened HWC times Keras' kernel equals the
    # NCHW map flattened CHW times skylark's weight
    fmap = np.random.default_rng(0).standard_normal((1, *shapes(spec, INPUT)[2]))
    chw = fmap.reshape(1, -1) @ params["4.weight"].T
    hwc = transfer.nchw_to_nhwc(fmap).reshape(1, -1) @ k["4.kernel"]
    np.testing.assert_allclose(hwc, chw, rtol=1e-13)
    planted = transfer.to_keras(params, spec, INPUT, plant="dense_hwc")["4.kernel"]
    assert not np.allclose(transfer.nchw_to_nhwc(fmap).reshape(1, -1) @ planted, chw)


@pytest.mark.torch
@pytest.mark.keras
@pytest.mark.tf
def test_round_trip_numpy_torch_keras_tf_numpy_bit_exact(reference_runner):
    m = model()
    spec, params = describe(m), {k: v.copy() for k, v in m.params().items()}
    p = params
    for name in ("torch", "keras", "tf"):
        r = reference_runner(name)
        r.setup(spec, p, "float64", INPUT)
        p = r.get_params()
    assert list(p) == list(params)
    for n in params:
        assert p[n].dtype == params[n].dtype and np.array_equal(p[n], params[n]), n


@pytest.mark.parametrize("bad, match", [
    ({"0.weight": np.zeros((3, 2, 2, 3))}, r"'0\.weight'.*expected \(3, 2, 3, 2\).*\(3, 2, 2, 3\)"),
    ({"4.bias": np.zeros(5)}, r"'4\.bias'.*expected \(4,\).*received \(5,\)"),
], ids=["kernel_transposed_shape", "bias_length"])
def test_misshaped_weight_names_tensor_and_both_shapes(bad, match):
    m = model()
    params = {**m.params(), **bad}
    with pytest.raises(ValueError, match=match):
        transfer.to_keras(params, describe(m), INPUT)
    with pytest.raises(ValueError, match=match):
        transfer.to_torch(params, describe(m))


def test_missing_and_unexpected_weights_are_named():
    m = model()
    params = dict(m.params())
    del params["4.bias"]
    params["9.weight"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"Missing: 4\.bias \(expected shape \(4,\)\).*9\.weight"):
        transfer.to_keras(params, describe(m), INPUT)
    k = transfer.to_keras(m.params(), describe(m), INPUT)
    k["4.kernel"] = k["4.kernel"].T
    with pytest.raises(ValueError, match=r"'4\.kernel'.*expected \(\d+, 4\).*received \(4, \d+\)"):
        transfer.from_keras(k, describe(m), INPUT)


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_runner_rejects_misshaped_weight(framework, reference_runner):
    r = reference_runner(framework)
    m = model()
    params = {**m.params(), "0.weight": np.zeros((3, 2, 2, 3))}
    with pytest.raises(ValueError, match=r"'0\.weight'.*\(3, 2, 3, 2\).*\(3, 2, 2, 3\)"):
        r.setup(describe(m), params, "float64", INPUT)


@pytest.mark.parametrize("framework", TRAINING_PARAMS)
def test_train_steps_lockstep_with_numpy(framework, reference_runner):
    """Three SGD steps with momentum: the same losses, weights and predictions as numpy."""
    m = model()
    spec, params = describe(m), m.params()
    rng = np.random.default_rng(0)
    xs = rng.uniform(-0.5, 0.5, (3, 4, *INPUT))
    ys = rng.integers(0, 4, (3, 4))
    runners = [get_runner("numpy"), reference_runner(framework)]
    for r in runners:
        r.setup(spec, params, "float64", INPUT)
        r.train_setup(lr=0.5, momentum=0.9)
    losses = [[r.train_step(x, y) for x, y in zip(xs, ys, strict=True)] for r in runners]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-12, err_msg=framework)
    want, got = runners[0].get_params(), runners[1].get_params()
    for n in want:
        np.testing.assert_allclose(got[n], want[n], rtol=0, atol=1e-12, err_msg=f"{framework} {n}")
    np.testing.assert_allclose(runners[1].predict(xs[0]), runners[0].predict(xs[0]),
                               rtol=0, atol=1e-12, err_msg=framework)


def test_flat_activations_follow_the_feature_order_element_by_element():
    """A flat Keras activation of a (C, H, W) = (2, 3, 4) map holds feature (h, w, c) at
    (h*W + w)*C + c; skylark's at (c*H + h)*W + w. Written out pixel by pixel here, both ways."""
    from reference.transfer import activation_from_keras, activation_to_keras

    c, h, w = 2, 3, 4
    ours = np.random.default_rng(0).standard_normal((2, c * h * w))
    keras_flat = np.zeros_like(ours)
    for ch, row, col in itertools.product(range(c), range(h), range(w)):
        keras_flat[:, (row * w + col) * c + ch] = ours[:, (ch * h + row) * w + col]
    np.testing.assert_array_equal(activation_from_keras(keras_flat, (c, h, w)), ours)
    np.testing.assert_array_equal(activation_to_keras(ours, (c, h, w)), keras_flat)
