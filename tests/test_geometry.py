"""Non-square geometry in every spatial layer, checked against the configuration ASKED for:
torch.nn.functional called with the test's own arguments (not with the layer's attributes, nor
through reference.spec, which reads them), the loop oracle with the same arguments, and the
output shape worked out here. A layer that collapsed stride (1, 2) to (1, 1), or swapped a
kernel's height and width, agrees with itself and with every spec-built reference, but not here.

float64, forward and backward (random cotangent), on random and tie-heavy inputs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import skylark as sk

from gradcheck import rel_error
from oracle import (
    avgpool_backward,
    avgpool_forward,
    conv_backward,
    conv_forward,
    global_avgpool_backward,
    global_avgpool_forward,
    maxpool_backward,
    maxpool_forward,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.torch

RTOL = 1e-12  # float64, the same sums in another order: a few ulps
H, W = 9, 8  # the input's spatial size: non-square


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def asked_pads(padding, kernel, stride, dilation=(1, 1), hw=(H, W)) -> tuple[int, ...]:
    """(top, bottom, left, right) from the requested arguments: TF's rule for "same" (ceil(n/s)
    outputs, the odd pixel bottom/right, the dilated kernel's extent), none for "valid",
    symmetric for ints."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        pads = []
        for n, k, s, d in zip(hw, kernel, stride, dilation, strict=True):
            total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


def asked_size(pads, kernel, stride, dilation=(1, 1), hw=(H, W)) -> tuple[int, int]:
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 for n, lo, hi, k, s, d in zip(
        hw, pads[::2], pads[1::2], kernel, stride, dilation, strict=True))


def inputs(shape):
    """A random input and a tie-heavy one (values on a coarse grid: many equal maxima)."""
    rng = np.random.default_rng(0)
    return {"random": rng.standard_normal(shape),
            "ties": rng.integers(-1, 2, shape).astype(np.float64)}


def torch_run(fn, x, cot, *params):
    """fn(x, *params) in torch and the gradients of sum(y * cot) w.r.t. x and params."""
    leaves = [torch.tensor(a, requires_grad=True) for a in (x, *params)]
    y = fn(*leaves)
    y.backward(torch.tensor(cot))
    return y.detach().numpy(), [t.grad.numpy() for t in leaves]


def torch_pad(x, pads, value=0.0):
    t, b, l, r = pads
    return F.pad(x, (l, r, t, b), value=value)


def _id(case):
    return "-".join(f"{k}{'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
                    for k, v in case.items())


CONV = [dict(k=k, s=s, p=p, d=d) for k, s, p, d in itertools.product(
    ((2, 3), (3, 1)), ((1, 2), (2, 1)), ((1, 0), (0, 2), "same", "valid"), ((1, 1), (1, 2)))]


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("case", CONV, ids=_id)
def test_conv_against_torch_and_oracle_from_the_asked_arguments(case, kind):
    k, s, d = case["k"], case["s"], case["d"]
    conv = sk.Conv2D(2, 3, k, stride=s, padding=case["p"], dilation=d, dtype="float64", seed=0)
    w = np.random.default_rng(1).standard_normal((3, 2, *k))
    b = np.random.default_rng(2).standard_normal(3)
    conv.weight[...], conv.bias[...] = w, b
    x = inputs((2, 2, H, W))[kind]
    pads = asked_pads(case["p"], k, s, d)
    y = conv.forward(x)
    assert y.shape == (2, 3, *asked_size(pads, k, s, d))
    cot = np.random.default_rng(3).standard_normal(y.shape)
    dx = conv.backward(cot)
    def fn(xt, wt, bt):
        return F.conv2d(torch_pad(xt, pads), wt, bt, stride=s, dilation=d)

    want, (tdx, tdw, tdb) = torch_run(fn, x, cot, w, b)
    for got, ref in ((y, want), (dx, tdx), (conv.grads["weight"], tdw), (conv.grads["bias"], tdb)):
        assert rel_error(got, ref) <= RTOL
    assert rel_error(y, conv_forward(x, w, b, s, pads, d)) <= RTOL
    assert rel_error(dx, conv_backward(cot, x, w, s, pads, d)[0]) <= RTOL


MAXPOOL = [dict(k=k, s=s, p=p, d=d, c=c) for k, s, (p, d, c) in itertools.product(
    ((2, 3), (3, 2)), ((1, 2), (2, 1), (3, 2)),
    (((1, 0), (1, 1), False), ((0, 1), (2, 1), True), ((1, 1), (1, 2), False),
     ("same", (1, 1), False), ("valid", (1, 1), True)))]


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("case", MAXPOOL, ids=_id)
def test_maxpool_against_torch_and_oracle_from_the_asked_arguments(case, kind):
    """torch and the oracle both send a tie's gradient to the window's first maximum."""
    k, s, p, d, ceil = case["k"], case["s"], case["p"], case["d"], case["c"]
    ceil = ceil and not isinstance(p, str)
    pool = sk.MaxPool2D(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    x = inputs((2, 3, H, W))[kind]
    y = pool.forward(x)
    if isinstance(p, str):
        pads = asked_pads(p, k, s, d)
        assert y.shape == (2, 3, *asked_size(pads, k, s, d))
        fn = lambda xt: F.max_pool2d(torch_pad(xt, pads, -math.inf), k, s, dilation=d)  # noqa: E731
    else:
        pads = asked_pads(p, k, s)
        fn = lambda xt: F.max_pool2d(xt, k, s, padding=p, dilation=d, ceil_mode=ceil)  # noqa: E731
        if not ceil:
            assert y.shape == (2, 3, *asked_size(pads, k, s, d))
    cot = np.random.default_rng(3).standard_normal(y.shape)
    dx = pool.backward(cot)
    want, (tdx,) = torch_run(fn, x, cot)
    assert y.shape == want.shape
    assert rel_error(y, want) <= RTOL and rel_error(dx, tdx) <= RTOL
    ly, _ = maxpool_forward(x, k, s, pads, d, ceil)
    assert np.array_equal(y, ly)
    assert rel_error(dx, maxpool_backward(cot, x, k, s, pads, d, ceil)) <= RTOL


AVGPOOL = [dict(k=k, s=s, p=p, i=i) for k, s, (p, i) in itertools.product(
    ((2, 3), (3, 2)), ((1, 2), (2, 1), (3, 2)),
    (((1, 0), True), ((1, 0), False), ((0, 1), True), ("same", None), ("valid", None)))]


@pytest.mark.parametrize("case", AVGPOOL, ids=_id)
def test_avgpool_against_torch_and_oracle_from_the_asked_arguments(case):
    """"same" averages the real cells only (TF): torch's sum over the padded windows divided
    by the count of real cells in each."""
    k, s, p, cip = case["k"], case["s"], case["p"], case["i"]
    pool = sk.AvgPool2D(k, stride=s, padding=p, count_include_pad=cip)
    x = inputs((2, 3, H, W))["random"]
    pads = asked_pads(p, k, s)
    y = pool.forward(x)
    assert y.shape == (2, 3, *asked_size(pads, k, s))
    cot = np.random.default_rng(3).standard_normal(y.shape)
    dx = pool.backward(cot)
    if isinstance(p, str):
        def fn(xt):
            total = F.avg_pool2d(torch_pad(xt, pads), k, s, divisor_override=1)
            cells = F.avg_pool2d(torch_pad(torch.ones_like(xt), pads), k, s, divisor_override=1)
            return total / cells
    else:
        def fn(xt):
            return F.avg_pool2d(xt, k, s, padding=p, count_include_pad=cip)
    want, (tdx,) = torch_run(fn, x, cot)
    assert rel_error(y, want) <= RTOL and rel_error(dx, tdx) <= RTOL
    oracle_cip = cip is not False and not isinstance(p, str)
    assert rel_error(y, avgpool_forward(x, k, s, pads, oracle_cip)) <= RTOL
    assert rel_error(dx, avgpool_backward(cot, x, k, s, pads, oracle_cip)) <= RTOL


@pytest.mark.parametrize("hw", [(1, 7), (5, 2), (9, 8)])
def test_global_avgpool_against_torch_and_oracle(hw):
    pool = sk.GlobalAvgPool2D()
    x = inputs((2, 3, *hw))["random"]
    y = pool.forward(x)
    assert y.shape == (2, 3)
    cot = np.random.default_rng(3).standard_normal(y.shape)
    dx = pool.backward(cot)
    want, (tdx,) = torch_run(lambda xt: F.adaptive_avg_pool2d(xt, 1).flatten(1), x, cot)
    assert rel_error(y, want) <= RTOL and rel_error(dx, tdx) <= RTOL
    assert rel_error(y, global_avgpool_forward(x)) <= RTOL
    assert rel_error(dx, global_avgpool_backward(cot, x)) <= RTOL


@pytest.mark.parametrize("layer, fn", [
    (sk.MaxPool2D, F.max_pool2d), (sk.AvgPool2D, F.avg_pool2d)], ids=["max", "avg"])
def test_pool_stride_defaults_to_the_asked_kernel(layer, fn):
    """No stride given: torch's default, the kernel itself (non-overlapping windows)."""
    x = inputs((2, 3, H, W))["random"]
    y = layer((2, 3)).forward(x)
    assert y.shape == (2, 3, H // 2, W // 3)
    np.testing.assert_allclose(y, fn(torch.tensor(x), (2, 3)).numpy(), rtol=RTOL, atol=0)


def test_maxpool_ceil_mode_drops_a_window_that_starts_in_the_padding():
    """torch's rule: rows 5, kernel 2, stride 2, padding 1 would give ceil(5 / 2) + 1 = 4 windows,
    but the 4th would start at padded row 6 = 5 + 1, in the bottom padding: dropped, 3 rows.
    Columns 6, kernel 3: ceil(5 / 2) + 1 = 4 windows, the 4th starts at 6 < 7: kept."""
    x = inputs((2, 3, 5, 6))["random"]
    pool = sk.MaxPool2D((2, 3), stride=2, padding=1, ceil_mode=True)
    y = pool.forward(x)
    assert y.shape == (2, 3, 3, 4)
    cot = np.random.default_rng(3).standard_normal(y.shape)
    dx = pool.backward(cot)
    fn = lambda xt: F.max_pool2d(xt, (2, 3), 2, padding=1, ceil_mode=True)  # noqa: E731
    want, (tdx,) = torch_run(fn, x, cot)
    assert rel_error(y, want) <= RTOL and rel_error(dx, tdx) <= RTOL
