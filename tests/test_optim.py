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


def _torch_sgd_run(p0, grads, lrs, momentum, resume_at=None):
    """torch.optim.SGD on one parameter: step t with grads[t] at lr lrs[t]; with `resume_at`,
    the optimizer is rebuilt there from its state_dict (a checkpoint resumed at a new lr)."""
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.SGD([p], lr=lrs[0], momentum=momentum)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True)):
        if t == resume_at:
            saved = opt.state_dict()
            opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
            opt.load_state_dict(saved)
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach().numpy()


def _skylark_sgd_run(p0, grads, lrs, momentum, resume_at=None):
    model = sk.Sequential(sk.Dense(p0.shape[1], p0.shape[0], bias=False, dtype="float64"))
    model[0].weight[...] = p0
    opt = sk.SGD(model, lr=lrs[0], momentum=momentum)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True)):
        if t == resume_at:  # what skylark.train saves and loads: SGD.state() / load_state()
            saved = opt.state()
            opt = sk.SGD(model, lr=lr, momentum=momentum)
            opt.load_state(saved)
        opt.lr = lr
        opt.zero_grad()
        model[0].grads["weight"][...] = g
        opt.step()
    return model[0].weight


@pytest.mark.torch
@pytest.mark.parametrize("resume_at", [None, 2], ids=["same_optimizer", "resumed_at_step_2"])
def test_sgd_follows_torch_when_lr_changes_between_steps(resume_at):
    """torch: buf = m*buf + g, p -= lr*buf, so a new lr scales the whole buffer at once. A
    velocity that stores lr*g (v = m*v + lr*g, p -= v) matches only while lr stays put: here
    the lr changes 10x and back, in one optimizer and across a save/resume of its state."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    lrs = [0.1, 0.1, 1.0, 0.05, 0.5]
    want = _torch_sgd_run(p0, grads, lrs, 0.9, resume_at)
    got = _skylark_sgd_run(p0, grads, lrs, 0.9, resume_at)
    # float64, five steps of the same arithmetic: a few ulps; the lr-scaled velocity is ~1 off
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    assert np.abs(got - p0).max() > 0.1  # the steps moved the weights
