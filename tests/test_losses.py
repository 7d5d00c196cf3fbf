"""softmax_cross_entropy: a stable mean loss from logits, its gradient, and the errors it
raises (labels out of range or of the wrong shape or dtype, non-finite logits); label smoothing
and the sum reduction against torch, by finite differences, and through every framework."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS

import skylark as sk
from reference.harness import run_check

from gradcheck import FD_RTOL, check_gradients, rel_error


def test_softmax_cross_entropy_stable_and_correct():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    loss, d = sk.softmax_cross_entropy(z, np.array([0, 2]))
    expected = (0.0 + (np.log(np.exp(1) + np.exp(2) + np.exp(3)) - 3)) / 2
    assert np.isclose(loss, expected, rtol=1e-15, atol=0)
    assert np.isfinite(d).all()
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-16)
    p = sk.softmax(z.astype(np.float32), axis=1)
    assert np.isfinite(p).all() and p.dtype == np.float32


def test_loss_gradient_fd():
    z = np.random.default_rng(0).standard_normal((5, 7)) * 3
    y = np.array([0, 6, 3, 3, 1])
    errors = check_gradients(
        lambda z_: (*sk.softmax_cross_entropy(z_, y), {}), z, {}, h=1e-5
    )
    assert errors["input"] <= FD_RTOL, errors


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([0, 10]), r"\[0, 10\). Received: label=10"),
        (np.array([-1, 0]), "Received: label=-1"),
        # every int dtype (the range check reads signed labels as unsigned), byte order,
        # and a strided view
        (np.array([0, -1], np.int8), "Received: label=-1"),
        (np.array([0, -128], np.int8), "Received: label=-128"),
        (np.array([0, -1], ">i4"), "Received: label=-1"),
        (np.array([0, 10], ">i8"), "Received: label=10"),
        (np.array([0, 300], np.uint16), "Received: label=300"),
        (np.array([0, 9, -5, 9])[::2][::-1], "Received: label=-5"),
        (np.array([[0, 1]]), r"shape \(2,\).*Received: labels with shape \(1, 2\)"),
        (np.array([0.0, 1.0]), "dtype float64"),
        (np.array([0, 1, 2]), r"Received: labels with shape \(3,\)"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        sk.softmax_cross_entropy(np.zeros((2, 10)), labels)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_raise(bad):
    z = np.zeros((3, 4))
    z[1, 2] = bad
    with pytest.raises(FloatingPointError, match=r"non-finite logits.*first at row 1"):
        sk.softmax_cross_entropy(z, np.array([0, 1, 2]))


# --- label smoothing and the reduction --------------------------------------------------------
# Against torch's F.cross_entropy (label_smoothing=, reduction=) in float64: a logsumexp and a
# K-term mean per row; both sides agree to ~1e-16 (measured), so 1e-13 relative to max(1, |b|)
# leaves three orders of magnitude and still catches any real difference (a smoothing that
# spreads eps over K - 1 classes is ~eps/K off; a sum/mean mix-up is N times off).
TORCH_RTOL = 1e-13
SMOOTHING = [0.0, 0.1, 0.5, 1.0]


def logits_labels(n=5, k=7, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, k)) * 3, r.integers(0, k, n)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", SMOOTHING)
def test_label_smoothing_and_reduction_match_torch(eps, reduction):
    torch = pytest.importorskip("torch")
    z, y = logits_labels()
    zt = torch.tensor(z, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(zt, torch.tensor(y), label_smoothing=eps,
                                               reduction=reduction)
    (dz_t,) = torch.autograd.grad(loss_t, zt)
    loss, dz = sk.softmax_cross_entropy(z, y, label_smoothing=eps, reduction=reduction)
    assert np.asarray(loss).dtype == dz.dtype == np.float64
    for what, a, b in (("loss", loss, loss_t.detach().numpy()), ("dlogits", dz, dz_t.numpy())):
        err = float(np.abs(a - b).max())
        assert err <= TORCH_RTOL * max(1.0, float(np.abs(b).max())), \
            f"{what} (eps={eps}, {reduction}): max|a-b|={err}"


def test_smoothed_target_is_one_minus_eps_onehot_plus_eps_over_k():
    """The definition (torch's and Keras'): q = (1 - eps) onehot + eps / K, loss = -sum q log p,
    so the gradient of the per-sample loss is p - q; eps = 1 is the uniform target."""
    z, y = logits_labels(4, 6, seed=1)
    p = sk.softmax(z, axis=1)
    for eps in SMOOTHING:
        q = (1 - eps) * np.eye(6)[y] + eps / 6
        loss, dz = sk.softmax_cross_entropy(z, y, label_smoothing=eps, reduction="sum")
        assert rel_error(np.array([loss]), np.array([-(q * np.log(p)).sum()])) <= 1e-14, eps
        assert rel_error(dz, p - q) <= 1e-14, eps


def test_sum_is_n_times_the_mean():
    z, y = logits_labels(6, 4, seed=2)
    mean, dmean = sk.softmax_cross_entropy(z, y, label_smoothing=0.2)
    total, dtotal = sk.softmax_cross_entropy(z, y, label_smoothing=0.2, reduction="sum")
    assert rel_error(np.array([total]), np.array([6 * mean])) <= 1e-15
    assert rel_error(dtotal, 6 * dmean) <= 1e-15


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_smoothed_loss_gradient_fd(eps, reduction):
    z, y = logits_labels(5, 7, seed=3)
    errors = check_gradients(lambda z_: (*sk.softmax_cross_entropy(
        z_, y, label_smoothing=eps, reduction=reduction), {}), z, {}, h=1e-5)
    assert errors["input"] <= FD_RTOL, errors


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_smoothed_loss_keeps_the_dtype(dtype):
    z, y = logits_labels()
    loss, dz = sk.softmax_cross_entropy(z.astype(dtype), y, label_smoothing=0.3,
                                        reduction="sum")
    assert np.asarray(loss).dtype == dz.dtype == np.dtype(dtype)


@pytest.mark.parametrize("kwargs, match", [
    (dict(label_smoothing=-0.1), r"label_smoothing must be a number in \[0, 1\]. "
                                 r"Received: label_smoothing=-0.1"),
    (dict(label_smoothing=1.5), "Received: label_smoothing=1.5"),
    (dict(label_smoothing=True), "Received: label_smoothing=True"),
    (dict(label_smoothing="0.1"), "Received: label_smoothing='0.1'"),
    (dict(reduction="none"), r"reduction must be one of \('mean', 'sum'\). "
                             "Received: reduction='none'"),
    (dict(reduction="MEAN"), "Received: reduction='MEAN'"),
])
def test_bad_loss_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sk.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), **kwargs)


def test_runner_loss_options_are_checked():
    from reference.runners.runner import loss_options

    assert loss_options(None) == {"label_smoothing": 0.0, "reduction": "mean"}
    assert loss_options({"label_smoothing": 1}) == {"label_smoothing": 1.0, "reduction": "mean"}
    with pytest.raises(ValueError, match=r"loss options are label_smoothing and reduction. "
                                         r"Received: \['reductoin'\]"):
        loss_options({"reductoin": "sum"})
    with pytest.raises(ValueError, match="Received: reduction='avg'"):
        loss_options({"reduction": "avg"})


# --- through every framework's runner ---------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_smoothed_summed_loss_matches_every_framework(framework, dtype, reference_runner):
    """The Skylark net through run_check with label smoothing 0.1 and a summed loss: every
    tensor (the loss pass carries both options) within the bars; the report records them."""
    options = {"label_smoothing": 0.1, "reduction": "sum"}
    report = run_check([framework], dtype, "random", runners={framework: reference_runner(
        framework)}, loss=options, log=lambda m: None)
    r = report["frameworks"][framework]
    assert report["config"]["loss"] == options
    assert r["status"] == "ok", (framework, dtype, r.get("reason"), r.get("first_forward"),
                                 r.get("first_backward"))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_any_memory_order_of_the_logits_gives_the_same_loss(eps):
    """The label's entry is found by a flat index: a Fortran-ordered or strided logits array
    must give the same loss and gradient, bit for bit, as a C-ordered copy."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((7, 4))
    y = rng.integers(0, 4, 7)
    want_loss, want_dz = sk.softmax_cross_entropy(z, y, label_smoothing=eps)
    for other in (np.asfortranarray(z), np.repeat(z, 2, axis=1)[:, ::2]):
        loss, dz = sk.softmax_cross_entropy(other, y, label_smoothing=eps)
        assert loss == want_loss
        np.testing.assert_array_equal(dz, want_dz)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", ">i4", "<u8", "int64"])
def test_valid_labels_of_every_int_dtype(dtype):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 7))
    y = np.array([0, 6, 3, 6, 1])
    want_loss, want_grad = sk.softmax_cross_entropy(z, y)
    loss, grad = sk.softmax_cross_entropy(z, y.astype(dtype))
    assert loss == want_loss and np.array_equal(grad, want_grad)


@pytest.mark.parametrize("dtype, label, k", [("int8", -1, 300), ("int8", -128, 129),
                                             ("int16", -20000, 50000), ("int8", -1, 128)])
def test_negative_small_int_labels_with_many_classes(dtype, label, k):
    """Read as unsigned, int8 -1 is 255 < 300: the one-reduction check must not be used then."""
    with pytest.raises(ValueError, match=f"Received: label={label}"):
        sk.softmax_cross_entropy(np.zeros((2, k), np.float32), np.array([0, label], dtype))
