"""Finite-difference proofs (float64, random cotangents) and the loop oracle, on a layer grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error
from oracle import conv_backward, conv_forward, maxpool_backward, maxpool_forward

ORACLE_RTOL = 1e-12  # same float64 math, different summation order: a few ulps

CONV_GRID = [
    dict(k=k, s=s, p=p, cin=cin, n=n, bias=bias)
    for k, s, p, (cin, n), bias in itertools.product(
        (1, 2, 3, 5), (1, 2, 3), (0, 1, "same", "valid"), ((1, 1), (3, 4)), (True, False)
    )
]
POOL_GRID = [
    dict(k=k, s=s, p=p, c=c, n=n)
    for k, s, p, (c, n) in itertools.product((2, 3), (1, 2, 3), (0, 1), ((1, 1), (3, 4)))
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


@pytest.mark.parametrize("case", POOL_GRID, ids=_cid)
def test_pool_gradients_fd_and_oracle(case):
    pool = sk.MaxPool2D(case["k"], stride=case["s"], padding=case["p"])
    x = rand((case["n"], case["c"], 8, 11))  # continuous values: no ties, no kinks under h
    y = pool.forward(x)
    cot = rand(y.shape, seed=1)
    errors = check_gradients(layer_fb(pool, cot), x, {})
    assert errors["input"] <= FD_RTOL, errors
    pads = (case["p"],) * 4
    ly, _ = maxpool_forward(x, pool.kernel_size, pool.stride, pads)
    assert np.array_equal(y, ly)
    pool.forward(x)
    assert rel_error(pool.backward(cot), maxpool_backward(cot, x, pool.kernel_size,
                                                          pool.stride, pads)) <= ORACLE_RTOL


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n", [1, 4])
def test_dense_gradients_fd(n, bias):
    dense = sk.Dense(13, 5, bias=bias, dtype="float64", seed=0)
    x = rand((n, 13))
    errors = check_gradients(layer_fb(dense, rand((n, 5), seed=1)), x, dense.params())
    assert max(errors.values()) <= FD_RTOL, errors


@pytest.mark.parametrize("layer", [sk.ReLU(), sk.Softmax(), sk.Flatten()], ids=repr)
def test_activation_gradients_fd(layer):
    x = rand((4, 6)) if not isinstance(layer, sk.Flatten) else rand((2, 3, 4, 5))
    cot = rand(layer.forward(x).shape, seed=1)
    errors = check_gradients(layer_fb(layer, cot), x, {})
    assert errors["input"] <= FD_RTOL, errors


def test_loss_gradient_fd():
    z = rand((5, 7)) * 3
    y = np.array([0, 6, 3, 3, 1])
    errors = check_gradients(
        lambda z_: (*sk.softmax_cross_entropy(z_, y), {}), z, {}, h=1e-5
    )
    assert errors["input"] <= FD_RTOL, errors


def net_fb(model, labels, cot=None):
    """f = loss (or <cot, logits>); every gradient of the whole net."""

    def fb(x):
        logits = model.forward(x)
        model.zero_grad()
        if cot is None:
            f, d = sk.softmax_cross_entropy(logits, labels)
        else:
            f, d = np.sum(cot * logits), cot
        dx = model.backward(d)
        return float(f), dx, {k: g.copy() for k, g in model.grads().items()}

    return fb


NETS = {
    "skylark-28x28-n2": (dict(input_shape=(1, 28, 28)), 2),
    "skylark-3x12x10-n4": (dict(input_shape=(3, 12, 10), filters=4, num_classes=5), 4),
}


@pytest.mark.parametrize("through", ["loss", "cotangent"])
@pytest.mark.parametrize("net", list(NETS))
def test_skylark_net_fd(net, through):
    kwargs, n = NETS[net]
    model = sk.skylark_cnn(dtype="float64", seed=3, **kwargs)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (n, *kwargs["input_shape"]))
    labels = np.arange(n) % model[-1].out_features
    cot = rand((n, model[-1].out_features), seed=2) if through == "cotangent" else None
    errors = check_gradients(net_fb(model, labels, cot), x, model.params())
    assert set(errors) == {"input", "0.weight", "3.weight", "3.bias"}
    assert max(errors.values()) <= FD_RTOL, errors


def test_deeper_stack_fd():
    """Conv -> ReLU -> Pool(3, stride 2, pad 1) -> Conv(stride 2, same) -> Flatten -> Dense."""
    model = sk.Sequential(
        sk.Conv2D(2, 3, 3, padding=1, dtype="float64", seed=1), sk.ReLU(),
        sk.MaxPool2D(3, stride=2, padding=1),
        sk.Conv2D(3, 4, 2, stride=2, padding="same", dtype="float64", seed=2),
        sk.Flatten(), sk.Dense(4 * 3 * 4, 3, dtype="float64", seed=3),
    )
    x = rand((3, 2, 9, 13))
    errors = check_gradients(net_fb(model, np.array([0, 1, 2])), x, model.params())
    assert max(errors.values()) <= FD_RTOL, errors


def test_batch_gradient_is_mean_of_sample_gradients():
    """With a mean loss the batch gradient is the mean of the per-sample gradients (a summed
    loss would make it N times larger)."""
    model = sk.skylark_cnn(input_shape=(1, 10, 10), dtype="float64", seed=4)
    x = rand((5, 1, 10, 10))
    y = np.array([1, 4, 9, 0, 2])
    _, _, batch = net_fb(model, y)(x)
    per = [net_fb(model, y[i : i + 1])(x[i : i + 1])[2] for i in range(5)]
    for k in batch:
        assert rel_error(batch[k], np.mean([p[k] for p in per], axis=0)) <= 1e-13, k
