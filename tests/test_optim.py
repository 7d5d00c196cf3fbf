"""SGD: torch's momentum formula, argument errors, and a short training run that learns."""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk


def test_sgd_momentum_follows_torch_formula():
    """v1 = g1, p1 = p0 - lr v1; v2 = m v1 + g2, p2 = p1 - lr v2 (torch.optim.SGD docs)."""
    model = sk.Sequential(sk.Dense(2, 1, bias=False, dtype="float64"))
    p0 = model[0].weight.copy()
    opt = sk.SGD(model, lr=0.5, momentum=0.9)
    g1, g2 = np.array([[1.0, -2.0]]), np.array([[0.25, 4.0]])
    model[0].grads["weight"][...] = g1
    opt.step()
    np.testing.assert_array_equal(model[0].weight, p0 - 0.5 * g1)
    opt.zero_grad()
    model[0].grads["weight"][...] = g2
    opt.step()
    np.testing.assert_allclose(model[0].weight, p0 - 0.5 * g1 - 0.5 * (0.9 * g1 + g2),
                               rtol=1e-15)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sk.SGD(sk.skylark_cnn(), lr=0), "Received: lr=0"),
        (lambda: sk.SGD(sk.skylark_cnn(), lr=0.1, momentum=1.5), "Received: momentum=1.5"),
    ],
)
def test_bad_arguments_name_the_received_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_training_reduces_loss():
    model = sk.skylark_cnn(input_shape=(1, 8, 8), seed=0)
    x = np.random.default_rng(3).uniform(-0.5, 0.5, (32, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(int)
    opt = sk.SGD(model, lr=0.5, momentum=0.9)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss, d = sk.softmax_cross_entropy(model.forward(x), y)
        model.backward(d)
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
