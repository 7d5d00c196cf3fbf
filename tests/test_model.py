"""Sequential and the Skylark CNN: shapes, names and init, dtypes end to end, load_params and
checkpoints, gradient accumulation, whole-net finite differences, the net on tied pool windows,
every layer's config() as JSON, and a core that imports no framework."""

from __future__ import annotations

import json

import numpy as np
import pytest

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, rel_error


def rng(seed=0):
    return np.random.default_rng(seed)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


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


def test_sequential_rejects_a_non_layer():
    with pytest.raises(ValueError, match="Received: layer 1 = 'relu'"):
        sk.Sequential(sk.ReLU(), "relu")


# --- every layer's config() -----------------------------------------------------------------

CONFIG_LAYERS = [
    sk.Conv2D(3, 4, (2, 3), stride=(2, 1), padding="same", bias=False, dtype="float64", seed=7),
    sk.Conv2D(1, 2, 3, padding=(1, 2), seed=7),
    sk.Conv2D(2, 2, 1, padding="valid", seed=7),
    sk.Conv2D(4, 6, (3, 2), stride=(2, 1), padding="same", dilation=(2, 1), groups=2, seed=7),
    sk.Conv2D(4, 8, 3, padding=1, dilation=2, groups=4, bias=False, dtype="float64", seed=7),
    sk.MaxPool2D((3, 2), stride=(1, 2), padding=(1, 1)),
    sk.MaxPool2D(2, padding="same"),
    sk.MaxPool2D(3),
    sk.MaxPool2D((2, 3), stride=1, padding=(1, 0), dilation=(2, 1), ceil_mode=True),
    sk.AvgPool2D((3, 2), stride=(1, 2), padding=(1, 1), count_include_pad=False),
    sk.AvgPool2D(2),
    sk.AvgPool2D(3, padding="same"),
    sk.GlobalAvgPool2D(),
    sk.BatchNorm2d(4, dtype="float64"),
    sk.Dropout(0.25),
    sk.LeakyReLU(0.2),
    sk.Sigmoid(),
    sk.Tanh(),
    sk.Dense(7, 5, bias=False, seed=7),
    sk.Dense(3, 2, dtype="float64", seed=7),
    sk.ReLU(),
    sk.Softmax(),
    sk.Flatten(),
]


@pytest.mark.parametrize("layer", CONFIG_LAYERS, ids=repr)
def test_config_survives_json_and_rebuilds_the_same_layer(layer):
    config = json.loads(json.dumps(layer.config()))
    assert config == layer.config()  # JSON-able as is: pairs are lists, padding a str or list
    extra = {"dtype": layer.dtype.name, "seed": 7} if layer.param_names else {}
    again = type(layer)(**config, **extra)
    assert type(again) is type(layer)
    assert again.config() == layer.config() and repr(again) == repr(layer)
    assert list(again.params()) == list(layer.params())
    for name, p in layer.params().items():
        assert again.params()[name].dtype == p.dtype, name
        np.testing.assert_array_equal(again.params()[name], p)


def test_every_layer_class_has_a_config_case():
    exported = {v for v in vars(sk).values()
                if isinstance(v, type) and issubclass(v, sk.Layer) and v is not sk.Layer}
    assert {type(layer) for layer in CONFIG_LAYERS} == exported


# --- parameters and checkpoints ---------------------------------------------------------------


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


def test_import_skylark_imports_no_framework():
    """The core is NumPy only: importing it (and its CLI) loads no framework."""
    import subprocess
    import sys

    code = ("import sys, skylark, skylark.cli, skylark.train, skylark.data; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out


# --- whole-net gradients (float64 finite differences) --------------------------------------------


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


def test_skylark_net_on_flat_background_filter_gradient():
    """A bias-free conv on a constant background gives constant feature maps, so nearly every
    pool window ties. The first-max rule's filter gradient matches a brute-force recomputation
    that routes each window's gradient to its first maximum; the rule that routes it to every
    tied element would give one several times larger."""
    model = sk.skylark_cnn(input_shape=(1, 12, 12), dtype="float64", seed=0)
    x = np.full((3, 1, 12, 12), -0.5)
    x[:, 0, 3:9, 5:7] = 0.5
    logits = model.forward(x)
    _, d = sk.softmax_cross_entropy(logits, np.array([1, 2, 3]))
    model.zero_grad()
    model.backward(d)
    net_grad = model.grads()["0.weight"].copy()
    conv, dense = model[0], model[3]
    fmap = conv.forward(x)
    dpool = (d @ dense.weight).reshape(3, 8, 5, 5)  # d loss / d pool output, by hand
    # brute force: gradient of each pool output goes to one pixel of fmap.
    dfmap_first = np.zeros_like(fmap)
    dfmap_all = np.zeros_like(fmap)
    for i, c, r, q in np.ndindex(*dpool.shape):
        win = fmap[i, c, 2 * r : 2 * r + 2, 2 * q : 2 * q + 2].reshape(-1)
        ties = np.flatnonzero(win == win.max())
        p = ties[0]
        dfmap_first[i, c, 2 * r + p // 2, 2 * q + p % 2] += dpool[i, c, r, q]
        for p in ties:
            dfmap_all[i, c, 2 * r + p // 2, 2 * q + p % 2] += dpool[i, c, r, q]
    conv.zero_grad()
    conv.backward(dfmap_first)
    np.testing.assert_allclose(net_grad, conv.grads["weight"], rtol=1e-12)
    first = np.abs(conv.grads["weight"]).sum()
    conv.zero_grad()
    conv.backward(dfmap_all)
    assert np.abs(conv.grads["weight"]).sum() > 2 * first  # the every-tie rule inflates it
