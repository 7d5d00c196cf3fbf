"""softmax_cross_entropy: a stable mean loss from logits, its gradient, and the errors it
raises (labels out of range or of the wrong shape or dtype, non-finite logits)."""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk

from gradcheck import FD_RTOL, check_gradients


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
