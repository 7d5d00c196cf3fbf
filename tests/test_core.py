"""The core's contract: dtypes, names, errors that name what they received, checkpoints, SGD."""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_end_to_end(dtype):
    model = sk.skylark_cnn(dtype=dtype)
    x = rng().uniform(-0.5, 0.5, (3, 1, 28, 28))  # float64 in: cast to the model's dtype
    logits = model.forward(x)
    loss, d = sk.softmax_cross_entropy(logits, np.array([0, 1, 2]))
    dx = model.backward(d)
    for name, a in {"logits": logits, "d": d, "dx": dx, "loss": loss, **model.params(),
                    **{f"grad {k}": g for k, g in model.grads().items()}}.items():
        assert a.dtype == np.dtype(dtype), name


def test_skylark_cnn_shapes_and_names():
    model = sk.skylark_cnn()
    assert [type(layer).__name__ for layer in model] == ["Conv2D", "MaxPool2D", "Flatten", "Dense"]
    assert {k: v.shape for k, v in model.params().items()} == {
        "0.weight": (8, 1, 3, 3), "3.weight": (10, 1352), "3.bias": (10,)}
    assert model[0].bias is None
    assert sk.skylark_cnn(input_shape=(1, 8, 8))[3].in_features == 8 * 3 * 3
    assert sk.skylark_cnn(input_shape=(3, 11, 20), filters=4)[3].in_features == 4 * 4 * 9


def test_skylark_cnn_seeded_init():
    a, b, c = sk.skylark_cnn(seed=1), sk.skylark_cnn(seed=1), sk.skylark_cnn(seed=2)
    for k in a.params():
        np.testing.assert_array_equal(a.params()[k], b.params()[k])
    assert not np.array_equal(a.params()["0.weight"], c.params()["0.weight"])
    w = sk.skylark_cnn(seed=0, dtype="float64").params()
    assert abs(w["0.weight"].std() * 9 - 1) < 0.35 and abs(w["3.weight"].std() * 1352 - 1) < 0.1
    assert not w["3.bias"].any()


def test_flatten_is_chw_order():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).astype(float)
    flat = sk.Flatten().forward(x)
    c, h, w = 1, 2, 3
    assert flat[1, c * 20 + h * 5 + w] == x[1, c, h, w]


def test_conv_is_cross_correlation_not_convolution():
    conv = sk.Conv2D(1, 1, 3, bias=False, dtype="float64")
    conv.weight[...] = np.arange(9.0).reshape(1, 1, 3, 3)
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = 1  # picks w[0, 0] under cross-correlation, w[2, 2] under convolution
    assert conv.forward(x)[0, 0, 0, 0] == 0.0


def test_same_padding_puts_odd_pixel_bottom_right():
    conv = sk.Conv2D(1, 1, 2, stride=2, padding="same")
    assert conv.pads((5, 6)) == (0, 1, 0, 0)
    assert sk.Conv2D(1, 1, 3, padding="same").pads((7, 7)) == (1, 1, 1, 1)
    assert sk.Conv2D(1, 1, 4, stride=1, padding="same").pads((6, 6)) == (1, 2, 1, 2)
    assert conv.forward(np.zeros((1, 1, 5, 6))).shape == (1, 1, 3, 3)


def test_softmax_cross_entropy_stable_and_correct():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    loss, d = sk.softmax_cross_entropy(z, np.array([0, 2]))
    expected = (0.0 + (np.log(np.exp(1) + np.exp(2) + np.exp(3)) - 3)) / 2
    assert np.isclose(loss, expected, rtol=1e-15, atol=0)
    assert np.isfinite(d).all()
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-16)
    p = sk.softmax(z.astype(np.float32), axis=1)
    assert np.isfinite(p).all() and p.dtype == np.float32


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sk.Conv2D(1, 8, 3, stride=0), "Received: stride=0"),
        (lambda: sk.Conv2D(1, 8, 3, stride=(1, -2)), r"Received: stride=\(1, -2\)"),
        (lambda: sk.Conv2D(1, 8, 3, padding=-1), "Received: padding=-1"),
        (lambda: sk.Conv2D(1, 8, 3, padding="full"), "Received: padding='full'"),
        (lambda: sk.Conv2D(1, 8, 0), "Received: kernel_size=0"),
        (lambda: sk.Conv2D(1, 8, 2.5), "Received: kernel_size=2.5"),
        (lambda: sk.Conv2D(0, 8, 3), "Received: in_channels=0"),
        (lambda: sk.Conv2D(1, 8, 3, dtype="float16"), "Received: dtype='float16'"),
        (lambda: sk.MaxPool2D(2, stride=0), "Received: stride=0"),
        (lambda: sk.MaxPool2D(2, padding=-1), "Received: padding=-1"),
        (lambda: sk.MaxPool2D(2, padding=2), "Received: padding=2"),
        (lambda: sk.Dense(0, 3), "Received: in_features=0"),
        (lambda: sk.SGD(sk.skylark_cnn(), lr=0), "Received: lr=0"),
        (lambda: sk.SGD(sk.skylark_cnn(), lr=0.1, momentum=1.5), "Received: momentum=1.5"),
        (lambda: sk.Sequential(sk.ReLU(), "relu"), "Received: layer 1 = 'relu'"),
    ],
)
def test_bad_arguments_name_the_received_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "layer, x, match",
    [
        (sk.Conv2D(1, 8, 3), np.zeros((1, 28, 28)), r"4-D input.*shape \(1, 28, 28\)"),
        (sk.Conv2D(3, 8, 3), np.zeros((2, 1, 9, 9)), r"3 input channels.*\(2, 1, 9, 9\)"),
        (sk.Conv2D(1, 8, 5), np.zeros((1, 1, 4, 9)), r"larger than the padded input \(4, 9\)"),
        (sk.Conv2D(1, 8, 5, padding=1), np.zeros((1, 1, 2, 9)), r"padded input \(4, 11\)"),
        (sk.MaxPool2D(3), np.zeros((1, 1, 2, 2)), r"larger than the padded input \(2, 2\)"),
        (sk.MaxPool2D(2), np.zeros((4, 4)), r"Received: input with shape \(4, 4\)"),
        (sk.Dense(5, 2), np.zeros((3, 4)), r"5 input features.*shape \(3, 4\)"),
        (sk.Dense(5, 2), np.zeros((3, 5), dtype=complex), "Received: dtype=complex128"),
    ],
)
def test_bad_input_names_the_received_shape(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(x)


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


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        sk.Conv2D(1, 1, 3).backward(np.zeros((1, 1, 1, 1)))


def test_load_params_validates():
    model = sk.skylark_cnn()
    good = {k: v.copy() for k, v in model.params().items()}
    with pytest.raises(ValueError, match=r"'3.weight' has the wrong shape.*\(10, 1352\).*"
                                         r"Received: shape \(1352, 10\)"):
        model.load_params({**good, "3.weight": good["3.weight"].T})
    with pytest.raises(ValueError, match=r"Missing: \['3.bias'\]"):
        model.load_params({k: v for k, v in good.items() if k != "3.bias"})
    with pytest.raises(ValueError, match=r"unexpected: \['4.weight'\]"):
        model.load_params({**good, "4.weight": np.zeros(3)})
    before = model.params()["0.weight"].copy()
    with pytest.raises(ValueError):  # nothing copied when one entry is wrong
        model.load_params({**good, "0.weight": before + 1, "3.bias": np.zeros(9)})
    np.testing.assert_array_equal(model.params()["0.weight"], before)


def test_save_load_round_trip(tmp_path):
    a, b = sk.skylark_cnn(seed=1), sk.skylark_cnn(seed=2)
    path = a.save(tmp_path / "ckpt.npz", metadata={"epoch": 3})
    assert b.load(path) == {"epoch": 3}
    for k in a.params():
        np.testing.assert_array_equal(a.params()[k], b.params()[k])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temp file left behind


def test_checkpoint_errors(tmp_path):
    model = sk.skylark_cnn()
    with pytest.raises(ValueError, match=r"no checkpoint.*Received: path=.*missing.npz"):
        model.load(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError):
        model.load(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(sk.CheckpointError, match="corrupt"):
        model.load(corrupt)
    other = sk.skylark_cnn(input_shape=(1, 8, 8)).save(tmp_path / "other.npz")
    with pytest.raises(sk.CheckpointError, match="does not fit"):
        model.load(other)
    with pytest.raises(ValueError, match=r"Received: path='.*ckpt.pt'"):
        model.save(tmp_path / "ckpt.pt")


def test_save_is_atomic(tmp_path, monkeypatch):
    """A save that dies half-way leaves the previous checkpoint intact and no temp file."""
    path = sk.skylark_cnn(seed=1).save(tmp_path / "ckpt.npz")
    good = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        sk.skylark_cnn(seed=2).save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_grads_accumulate_until_zero_grad():
    model = sk.skylark_cnn(input_shape=(1, 8, 8), dtype="float64")
    x, y = rng().uniform(-0.5, 0.5, (2, 1, 8, 8)), np.array([1, 2])
    model.zero_grad()
    model.backward(sk.softmax_cross_entropy(model.forward(x), y)[1])
    once = {k: g.copy() for k, g in model.grads().items()}
    model.backward(sk.softmax_cross_entropy(model.forward(x), y)[1])
    for k, g in model.grads().items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-15)
    model.zero_grad()
    assert all(not g.any() for g in model.grads().values())


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


def test_training_reduces_loss():
    model = sk.skylark_cnn(input_shape=(1, 8, 8), seed=0)
    x = rng(3).uniform(-0.5, 0.5, (32, 1, 8, 8)).astype(np.float32)
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


def test_import_skylark_imports_no_framework():
    """The core is NumPy only: importing it (and its CLI) loads no framework."""
    import subprocess
    import sys

    code = ("import sys, skylark, skylark.cli, skylark.train, skylark.data; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out
