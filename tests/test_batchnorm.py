"""BatchNorm2d: finite differences in training and eval mode, the per-channel loop oracle, the
running-statistics rule against torch itself (unbiased variance, torch's momentum), eval on the
running statistics, argument and input errors, equivalence with every framework in both modes
(the updated running statistics compared too), and stock Keras' biased update caught at
`stat.<i>.running_var`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from equivalence import (
    DTYPES,
    INPUTS,
    equivalence_tests,
    make_case,
    minimal_net,
)

import skylark as sk
from reference.budgets import F64_RTOL
from reference.inputs import all_zero
from reference.runners.registry import get_runner
from reference.runners.runner import FrameworkUnavailable
from reference.spec import geometry

import oracle
from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error

# The loop oracle and the layer sum in different orders; in float64 they agree to ~1e-15
# (measured), so 1e-12 relative to the larger tensor's max is a bar no real difference passes.
ORACLE_RTOL = 1e-12


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def bn_with_state(c=3, eps=1e-3, momentum=0.2, seed=0, dtype="float64") -> sk.BatchNorm2d:
    """A BatchNorm2d whose weight (mixed signs), bias and running statistics are all nontrivial:
    torch's init (1, 0, 0, 1) would hide a swapped weight/bias or mean/var."""
    bn = sk.BatchNorm2d(c, eps=eps, momentum=momentum, dtype=dtype)
    r = np.random.default_rng(seed)
    bn.weight[...] = r.uniform(0.5, 2.0, c) * r.choice([-1.0, 1.0], c)
    bn.bias[...] = r.standard_normal(c)
    bn.running_mean[...] = r.standard_normal(c) * 0.3
    bn.running_var[...] = r.uniform(0.5, 2.0, c)
    return bn


# --- finite differences and the loop oracle ---------------------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (2, 3, 1, 7)], ids=str)
def test_batchnorm_gradients_fd(shape, training):
    """Training: the batch mean and variance depend on every x of the channel, so dx has the
    cross terms; FD sees them all. Non-square maps, a random cotangent."""
    bn = bn_with_state(shape[1], seed=1)
    bn.training = training
    x = rand(shape) * 2 + 0.5
    errors = check_gradients(layer_fb(bn, rand(shape, seed=2)), x, bn.params())
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) <= FD_RTOL, errors


@pytest.mark.parametrize("inputs", ["random", "background"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_float32_both_layouts_match_the_float64_oracle(training, inputs):
    """The float32 layer works on (C, N*H*W) channel rows: a free view of a Conv2D output's
    (C, H, W, N) memory, a copy of an (N, C, H, W) array. Both layouts must give the same bits
    (the same rows, the same sums), and both the float64 loop oracle's values up to float32
    rounding. Tie-heavy inputs too: a constant background with a few bright pixels, and one
    channel constant throughout (variance 0)."""
    shape = (8, 3, 6, 6)
    x = rand(shape, seed=6) * 3 - 1
    if inputs == "background":
        x = np.where(rand(shape, seed=7) > 1.5, 5.0, 0.25)
        x[:, 1] = 0.5
    x, dy = x.astype(np.float32), rand(shape, seed=8).astype(np.float32)
    results = []
    for layout in ("nchw", "chwn"):
        bn = bn_with_state(3, eps=1e-2, momentum=0.3, seed=3, dtype="float32")
        bn.training = training
        xl, dyl = x, dy
        if layout == "chwn":  # the same values, batch innermost in memory
            xl = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
            dyl = np.ascontiguousarray(dy.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
        before = {k: v.astype(np.float64) for k, v in bn.buffers().items()}
        out = {"y": bn.forward(xl), "dx": bn.backward(dyl)}
        out.update(running_mean=bn.running_mean, running_var=bn.running_var,
                   dweight=bn.grads["weight"], dbias=bn.grads["bias"])
        results.append(out)
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k], err_msg=k)
    w64, b64 = (a.astype(np.float64) for a in (bn.weight, bn.bias))
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y_want, mean_want, var_want = oracle.batchnorm_forward(
        x64, w64, b64, before["running_mean"], before["running_var"], bn.eps, bn.momentum,
        training)
    dx_want, dw_want, db_want = oracle.batchnorm_backward(
        dy64, x64, w64, before["running_mean"], before["running_var"], bn.eps, training)
    want = {"y": y_want, "running_mean": mean_want, "running_var": var_want, "dx": dx_want,
            "dweight": dw_want, "dbias": db_want}
    # Each value goes through sums of M = N*H*W = 288 float32 terms (mean, variance, the
    # two backward sums), whose error in any summation order is at most (M - 1) eps32 times
    # the sum of the terms' magnitudes, and then a few float32 roundings: 4 M eps32 relative
    # to the tensor's largest value bounds it (1.4e-4); the biased/unbiased variance factor
    # M / (M - 1), the smallest real bug this guards, is 3.5e-3 off.
    rtol = 4 * 288 * np.finfo(np.float32).eps
    for k, v in want.items():
        assert rel_error(results[0][k].astype(np.float64), v) <= rtol, k


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_matches_loop_oracle(training):
    bn = bn_with_state(3, eps=1e-2, momentum=0.3, seed=3)
    bn.training = training
    x, dy = rand((2, 3, 4, 5), seed=4) * 3 - 1, rand((2, 3, 4, 5), seed=5)
    before = {k: v.copy() for k, v in bn.buffers().items()}
    y_want, mean_want, var_want = oracle.batchnorm_forward(
        x, bn.weight, bn.bias, before["running_mean"], before["running_var"], bn.eps,
        bn.momentum, training)
    dx_want, dw_want, db_want = oracle.batchnorm_backward(
        dy, x, bn.weight, before["running_mean"], before["running_var"], bn.eps, training)
    y = bn.forward(x)
    dx = bn.backward(dy)
    got = {"y": (y, y_want), "running_mean": (bn.running_mean, mean_want),
           "running_var": (bn.running_var, var_want), "dx": (dx, dx_want),
           "dweight": (bn.grads["weight"], dw_want), "dbias": (bn.grads["bias"], db_want)}
    errors = {k: rel_error(a, b) for k, (a, b) in got.items()}
    assert max(errors.values()) <= ORACLE_RTOL, errors
    if not training:  # eval reads the running statistics and leaves them alone
        for k, v in before.items():
            np.testing.assert_array_equal(bn.buffers()[k], v, err_msg=k)


def test_eval_normalises_with_the_running_statistics():
    bn = bn_with_state(2, eps=1e-5, seed=6)
    bn.training = False
    x = rand((3, 2, 2, 3), seed=7)
    want = ((x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5)
            * bn.weight[:, None, None] + bn.bias[:, None, None])
    assert rel_error(bn.forward(x), want) <= ORACLE_RTOL
    # one value per channel is fine in eval: nothing is estimated from the batch
    assert bn.forward(x[:1, :, :1, :1]).shape == (1, 2, 1, 1)


def test_training_normalises_with_the_batch_statistics_and_biased_variance():
    bn = sk.BatchNorm2d(2, eps=1e-5, dtype="float64")
    x = rand((4, 2, 3, 2), seed=8) * 5 + 3
    y = bn.forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-14)
    # biased variance: the normalised batch has variance var / (var + eps), not (n-1)/n of it
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-12)


def test_momentum_one_makes_the_running_statistics_this_batch_unbiased():
    """torch's momentum is the weight of the NEW value: momentum=1 keeps only this batch; and
    the running variance is the unbiased one (ddof=1 over N*H*W)."""
    bn = bn_with_state(3, momentum=1.0, seed=9)
    x = rand((2, 3, 3, 4), seed=10)
    bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, x.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(bn.running_var, x.transpose(1, 0, 2, 3).reshape(3, -1)
                               .var(axis=1, ddof=1), rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept(dtype):
    bn = sk.BatchNorm2d(2, dtype=dtype)
    y = bn.forward(rand((2, 2, 3, 3)))  # float64 in: cast to the layer's dtype
    dx = bn.backward(rand((2, 2, 3, 3), seed=1))
    for name, a in {"y": y, "dx": dx, **bn.params(), **bn.buffers(),
                    **{f"grad {k}": g for k, g in bn.grads.items()}}.items():
        assert a.dtype == np.dtype(dtype), name


# --- the running statistics against torch itself ----------------------------------------------


@pytest.mark.torch
def test_running_statistics_follow_torch_over_several_steps():
    """nn.BatchNorm2d in float64, five training steps on batches of different sizes (so the
    unbiased factor n / (n - 1) changes), then eval: every output and both running statistics
    within the float64 bar after every step."""
    torch = pytest.importorskip("torch")
    bn = bn_with_state(3, eps=1e-4, momentum=0.15, seed=11)
    ref = torch.nn.BatchNorm2d(3, eps=1e-4, momentum=0.15).double()
    with torch.no_grad():
        for name, v in {**bn.params(), **bn.buffers()}.items():
            getattr(ref, name).copy_(torch.tensor(v))

    def close(a, b, what):
        a, b = np.asarray(a), np.asarray(b)
        err = np.abs(a - b).max()
        assert err <= F64_RTOL * max(1.0, np.abs(b).max()), f"{what}: max|a-b|={err}"

    for step, n in enumerate([2, 5, 1, 3, 4]):
        x = rand((n, 3, 2, 3), seed=20 + step) * (step + 1) + step
        y = bn.forward(x)
        with torch.no_grad():
            y_ref = ref(torch.tensor(x)).numpy()
        close(y, y_ref, f"step {step}: output")
        close(bn.running_mean, ref.running_mean.numpy(), f"step {step}: running_mean")
        close(bn.running_var, ref.running_var.numpy(), f"step {step}: running_var")
    bn.training = False
    ref.eval()
    x = rand((2, 3, 2, 3), seed=30)
    with torch.no_grad():
        close(bn.forward(x), ref(torch.tensor(x)).numpy(), "eval output")
    close(bn.running_var, ref.running_var.numpy(), "running_var after eval")


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_features=0), "num_features must be a positive int. Received: num_features=0"),
    (dict(num_features=2.0), "Received: num_features=2.0"),
    (dict(num_features=True), "Received: num_features=True"),
    (dict(num_features=3, eps=0), r"eps must be a number > 0. Received: eps=0"),
    (dict(num_features=3, eps=-1e-5), "Received: eps=-1e-05"),
    (dict(num_features=3, eps="1e-5"), "Received: eps='1e-5'"),
    (dict(num_features=3, momentum=0), r"momentum must be a number in \(0, 1\]. "
                                       "Received: momentum=0"),
    (dict(num_features=3, momentum=1.5), "Received: momentum=1.5"),
    (dict(num_features=3, momentum=None), "Received: momentum=None"),
    (dict(num_features=3, momentum=True), "Received: momentum=True"),
])
def test_bad_arguments_name_the_received_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sk.BatchNorm2d(**kwargs)


@pytest.mark.parametrize("x, training, match", [
    (np.zeros((1, 3, 1, 1)), True,
     r"more than one value per channel. Received: input with shape \(1, 3, 1, 1\)"),
    (np.zeros((2, 4, 3, 3)), True, r"expects 3 channels \(NCHW\). Received: input with shape "
                                   r"\(2, 4, 3, 3\)"),
    (np.zeros((2, 4, 3, 3)), False, r"expects 3 channels .*\(2, 4, 3, 3\)"),
    (np.zeros((2, 3, 4)), True, r"4-D input. Received: input with shape \(2, 3, 4\)"),
])
def test_bad_input_names_the_received_shape(x, training, match):
    bn = sk.BatchNorm2d(3)
    bn.training = training
    with pytest.raises(ValueError, match=match):
        bn.forward(x)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        sk.BatchNorm2d(2).backward(np.zeros((2, 2, 1, 1)))


def test_spec_with_the_wrong_channel_count_is_named():
    spec = [{"kind": "batchnorm2d", "num_features": 3, "eps": 1e-5, "momentum": 0.1}]
    with pytest.raises(ValueError, match=r"spec layer 0: batchnorm2d expects 3 channels. "
                                         r"Received: input shape \(2, 4, 4\)"):
        geometry(spec, (2, 4, 4))


# --- equivalence with every framework ---------------------------------------------------------
# (factory, input shape (C, H, W), batch); the helper adds Flatten + Dense. Training compares the
# batch-statistics forward, its backward (with the mean/variance cross terms) and the updated
# running statistics stat.{i}.running_mean/var; eval the running-statistics forward.
BN_CASES = [
    pytest.param(lambda: bn_with_state(3, eps=1e-3, momentum=0.2), (3, 5, 6), 4, id="bn_map"),
    pytest.param(lambda: sk.Sequential(sk.LeakyReLU(0.1), bn_with_state(2, momentum=0.9, seed=4)),
                 (2, 3, 7), 3, id="leaky_bn_nonsquare"),
]
VARIANTS = list(itertools.product(DTYPES, INPUTS))
MODES = [pytest.param(True, id="train"), pytest.param(False, id="eval")]


@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", BN_CASES)
def test_bn_case_reference_tensors_are_nonzero(make, shape, batch, dtype, kind, training):
    """Zeros match zeros and prove nothing: every numpy tensor of a case is nonzero somewhere;
    in training the running statistics are among them."""
    model = minimal_net(make(), shape)
    case = make_case(model, shape, dtype, kind, batch, training=training)
    assert all_zero(case.ref) == []
    stats = {t for t in case.ref if t.startswith("stat.")}
    assert stats == ({f"stat.{k}" for k in model.buffers()} if training else set())


# the richer nonzero test above is this family's own; the framework test is the shared one
_, test_bn_matches_every_framework = equivalence_tests(BN_CASES, modes=True)


# --- stock Keras' biased running variance is caught -------------------------------------------


@pytest.mark.keras
def test_stock_keras_batchnorm_fails_at_the_running_variance():
    """keras.layers.BatchNormalization moves the running variance with the BIASED batch
    variance. Everything it computes for the batch itself is right (every out.*, the loss, both
    backward passes); the first diverging tensor is the updated running variance."""
    try:
        keras_bn = get_runner("keras", plant="keras_bn_biased")
    except FrameworkUnavailable as e:
        pytest.skip(f"keras is not installed: {e.reason}")
    try:
        model = minimal_net(sk.Sequential(sk.LeakyReLU(0.1), bn_with_state(3)), (3, 4, 5))
        case = make_case(model, (3, 4, 5), "float64", "random", 4)
        keras_bn.setup(*case.setup_args(), loss=case.loss)
        report = case.compare("keras", keras_bn.trace(*case.batch(), **case.trace_kwargs()))
    finally:
        keras_bn.close()
    rows = {r["tensor"]: r for r in report["rows"]}
    assert report["status"] == "FAIL"
    assert report["first_forward"] == "stat.1.running_var", report["first_forward"]
    assert report["first_backward"] == {"loss": None, "cot": None}
    bad = sorted(t for t, r in rows.items() if not r["ok"])
    assert bad == ["stat.1.running_var"], bad
    # off by momentum * var * (n/(n-1) - 1): far above the bar, not a rounding
    assert rows["stat.1.running_var"]["max_abs"] > 1e3 * rows["stat.1.running_var"]["budget"]


def test_keras_bn_plant_exists_for_keras_only():
    with pytest.raises(ValueError, match=r"keras_bn_biased exists for keras, .*keras-jax only\. "
                                         r"Received: 'torch'"):
        get_runner("torch", plant="keras_bn_biased")
