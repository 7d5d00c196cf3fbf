"""Sequential and the Skylark CNN: shapes, names and init, dtypes end to end, load_params and
checkpoints, gradient accumulation, whole-net finite differences, the net on tied pool windows,
every layer's config() as JSON, and a core that imports no framework. Modes and state:
train()/eval(), buffers (BatchNorm's running statistics) in state() and checkpoints, evaluate in
eval mode, a bit-identical resume with BatchNorm and Dropout. skylark.models: configs of every
layer kind, build_model's sources (built-in, .json, module:function) and its errors."""

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
    sk.BatchNorm2d(4, eps=1e-3, momentum=0.25, dtype="float64", seed=7),
    sk.BatchNorm2d(2),
    sk.ReLU(),
    sk.LeakyReLU(0.2),
    sk.LeakyReLU(),
    sk.Sigmoid(),
    sk.Tanh(),
    sk.Dropout(0.3),
    sk.Dropout(),
    sk.Softmax(),
    sk.Flatten(),
    sk.Add(),
    sk.Concat(),
    sk.Multiply(),
    sk.ChannelSlice(1, 3),
    sk.ReLU6(),
    sk.Hardsigmoid(),
    sk.Hardswish(),
    sk.SiLU(),
    sk.GELU(),
    sk.GELU("tanh"),
    sk.AdaptiveAvgPool2d(1),
    sk.AdaptiveAvgPool2d((3, 2)),
    sk.ChannelShuffle(3),
    sk.Identity(),
    sk.ZeroPad2d(1),
    sk.ZeroPad2d((1, 2, 0, 3)),
    sk.StochasticDepth(0.2),
    sk.StochasticDepth(0.5, "batch"),
    sk.Rescaling(1 / 255),
    sk.Rescaling([0.5, 2.0, -1.0], [0.1, 0.0, 3.0]),
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
    assert list(again.buffers()) == list(layer.buffers())
    for name, p in {**layer.params(), **layer.buffers()}.items():
        got = {**again.params(), **again.buffers()}[name]
        assert got.dtype == p.dtype, name
        np.testing.assert_array_equal(got, p)


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


# --- modes, buffers and state -----------------------------------------------------------------


def bn_net(dtype="float64", seed=0, input_shape=(1, 8, 8)) -> sk.Sequential:
    """conv -> BatchNorm -> ReLU -> pool -> flatten -> dropout -> dense: every mode-dependent
    layer, small enough to train on digits in a moment."""
    c, h, w = input_shape
    return sk.Sequential(
        sk.Conv2D(c, 4, 3, padding=1, dtype=dtype, seed=seed), sk.BatchNorm2d(4, dtype=dtype),
        sk.ReLU(), sk.MaxPool2D(2), sk.Flatten(), sk.Dropout(0.3, seed=seed),
        sk.Dense(4 * (h // 2) * (w // 2), 10, dtype=dtype, seed=seed + 1))


def test_train_and_eval_reach_every_layer():
    model = bn_net()
    assert model.training and all(layer.training for layer in model)
    assert model.eval() is model
    assert not model.training and not any(layer.training for layer in model)
    assert model.train() is model and all(layer.training for layer in model)
    model.train(False)
    assert not any(layer.training for layer in model)
    model[1].training = True  # one layer in training: the model is not "training"
    assert not model.training


def test_state_is_parameters_and_buffers_layer_by_layer():
    model = bn_net()
    assert list(model.params()) == ["0.weight", "0.bias", "1.weight", "1.bias", "6.weight",
                                    "6.bias"]
    assert list(model.buffers()) == ["1.running_mean", "1.running_var"]
    assert list(model.state()) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                   "1.running_mean", "1.running_var", "6.weight", "6.bias"]
    assert list(model.grads()) == list(model.params())  # buffers are not trained
    assert all(np.shares_memory(a, getattr(model[int(k.split(".")[0])], k.split(".")[1]))
               for k, a in model.state().items())  # the live arrays


def test_load_state_is_all_or_nothing():
    model, other = bn_net(seed=0), bn_net(seed=5)
    other[1].running_mean[...] = 0.5
    other[1].running_var[...] = 2.0
    good = {k: v.copy() for k, v in other.state().items()}
    before = {k: v.copy() for k, v in model.state().items()}
    bad = [
        ({k: v for k, v in good.items() if k != "1.running_var"},
         r"Missing: \['1.running_var'\]"),
        ({**good, "1.running_mean": np.zeros(5)},
         r"'1.running_mean' has the wrong shape. Expected: \(4,\). Received: shape \(5,\)"),
        ({**good, "1.running_var": np.full(4, np.nan)}, "'1.running_var' holds nan or inf"),
        ({**good, "2.running_mean": np.zeros(4)}, r"unexpected: \['2.running_mean'\]"),
    ]
    for mapping, match in bad:
        with pytest.raises(ValueError, match=match):
            model.load_state(mapping)
        for k, v in before.items():  # nothing copied, parameters included
            np.testing.assert_array_equal(model.state()[k], v, err_msg=f"{match}: {k}")
    model.load_state(good)
    for k, v in good.items():
        np.testing.assert_array_equal(model.state()[k], v, err_msg=k)


def test_load_params_leaves_the_buffers_alone():
    model = bn_net()
    model[1].running_var[...] = 3.0
    model.load_params({k: v + 1 for k, v in model.params().items()})
    np.testing.assert_array_equal(model[1].running_var, 3.0)
    with pytest.raises(ValueError, match=r"unexpected: \['1.running_mean', '1.running_var'\]"):
        model.load_params(model.state())


def test_checkpoint_round_trips_the_buffers(tmp_path):
    a, b = bn_net(seed=1), bn_net(seed=2)
    a.forward(np.random.default_rng(0).uniform(-0.5, 0.5, (5, 1, 8, 8)))  # moves the stats
    assert not np.array_equal(a[1].running_var, b[1].running_var)
    path = a.save(tmp_path / "bn.npz", metadata={"epoch": 1})
    assert b.load(path) == {"epoch": 1}
    for k, v in a.state().items():
        np.testing.assert_array_equal(b.state()[k], v, err_msg=k)
    # a parameters-only checkpoint (as written before buffers existed) does not fit a BN model
    old = tmp_path / "params_only.npz"
    np.savez(old, **a.params())
    with pytest.raises(sk.CheckpointError, match=r"does not fit.*Missing: \['1.running_mean', "
                                                  r"'1.running_var'\]"):
        b.load(old)


def tiny_data(n_train=10, n_test=4, shape=(1, 8, 8), classes=10, seed=0):
    from skylark.data import Dataset

    r = np.random.default_rng(seed)
    return Dataset("tiny", r.uniform(-0.5, 0.5, (n_train, *shape)),
                   r.integers(0, classes, n_train), r.uniform(-0.5, 0.5, (n_test, *shape)),
                   r.integers(0, classes, n_test), classes)


@pytest.mark.parametrize("mode", [True, False], ids=["from_train", "from_eval"])
def test_evaluate_runs_in_eval_mode_and_restores_the_mode(mode):
    from skylark.train import evaluate

    model, data = bn_net(), tiny_data(n_test=30)
    model[1].running_mean[...] = 0.1
    model.train(mode)
    stats = {k: v.copy() for k, v in model.buffers().items()}
    first = evaluate(model, data.x_test, data.y_test, batch_size=7)
    assert evaluate(model, data.x_test, data.y_test) == first  # no dropout, no batch stats
    assert model.training == mode
    for k, v in stats.items():
        np.testing.assert_array_equal(model.buffers()[k], v, err_msg=k)
    model.eval()
    want = (model.forward(data.x_test).argmax(axis=1) == data.y_test).mean()
    assert first == want


def test_fit_passes_the_loss_options():
    from skylark.data import batches
    from skylark.train import fit

    model, data = sk.skylark_cnn((1, 8, 8), dtype="float64"), tiny_data()
    start = sk.skylark_cnn((1, 8, 8), dtype="float64")
    options = {"label_smoothing": 0.2, "reduction": "sum"}
    hist = fit(model, data, epochs=1, batch_size=4, lr=0.01, seed=3, progress=False,
               log=lambda m: None, loss=options)
    idx = batches(10, 4, 3, 0)[0]
    want, _ = sk.softmax_cross_entropy(start.forward(data.x_train[idx]), data.y_train[idx],
                                       **options)
    assert hist.loss[0] == float(want)


def test_resume_is_bit_identical_with_batchnorm_and_dropout(tmp_path):
    """3 epochs at once == 2 epochs, a checkpoint, then 1 more from it: the checkpoint carries
    the running statistics, fit reseeds dropout per global step, so a resumed run sees the same
    batches, masks and statistics."""
    from skylark.data import load_dataset
    from skylark.train import fit

    data = load_dataset("digits", "float64")
    kw = dict(batch_size=128, lr=0.2, momentum=0.9, seed=4, progress=False, log=lambda m: None)
    once = bn_net()
    h_once = fit(once, data, epochs=3, **kw)
    ckpt = tmp_path / "ckpt.npz"
    first = bn_net()
    fit(first, data, epochs=2, save=ckpt, **kw)
    resumed = bn_net(seed=9)  # other weights: everything must come from the checkpoint
    h_resumed = fit(resumed, data, epochs=3, save=ckpt, resume=ckpt, **kw)
    assert h_resumed.loss == h_once.loss and h_resumed.test_accuracy == h_once.test_accuracy
    for k, v in once.state().items():
        np.testing.assert_array_equal(resumed.state()[k], v, err_msg=k)
    assert not np.array_equal(once[1].running_var, np.ones(4))  # the statistics did move


# --- skylark.models ---------------------------------------------------------------------------

EVERY_KIND = [
    sk.Conv2D(2, 4, (3, 2), stride=(1, 2), padding="same", bias=False, seed=1),
    sk.BatchNorm2d(4, eps=1e-4, momentum=0.3), sk.LeakyReLU(0.2), sk.MaxPool2D(2, padding=1),
    sk.Tanh(), sk.ReLU(), sk.Sigmoid(), sk.AvgPool2D(3, stride=1, padding="same"),
    sk.ReLU6(), sk.Hardsigmoid(), sk.Hardswish(), sk.SiLU(), sk.GELU("tanh"), sk.Identity(),
    sk.Rescaling([0.5, 2.0, -1.0, 3.0], 0.25), sk.StochasticDepth(0.2), sk.ZeroPad2d((1, 0, 2, 1)),
    sk.ChannelShuffle(2), sk.AdaptiveAvgPool2d([2, 6]), sk.Flatten(),
    sk.Dropout(0.1), sk.Dense(48, 5, seed=2), sk.Softmax(),
]
# a global pool ends the map, so it round-trips in a model of its own
GLOBAL = [sk.GlobalAvgPool2D()]
# the kinds that join or split tensors, in a graph of their own: (name, layer, inputs)
GRAPH = [("a", sk.ChannelSlice(0, 2), "input"), ("b", sk.ChannelSlice(1, 3), "input"),
         ("sum", sk.Add(), ["a", "b"]), ("cat", sk.Concat(), ["sum", "input"]),
         ("gate", sk.ChannelSlice(0, 1), "cat"), ("mul", sk.Multiply(), ["cat", "gate"])]


def test_every_layer_kind_round_trips_through_a_config():
    from skylark.models import LAYERS, from_config, to_config

    model = sk.Sequential(*EVERY_KIND)
    config, config_global = to_config(model), to_config(sk.Sequential(*GLOBAL))
    config_graph = to_config(sk.Graph(GRAPH))
    assert {entry["kind"] for entry in config + config_global + config_graph} == set(LAYERS)
    assert to_config(from_config(config_global)) == config_global
    assert to_config(from_config(json.loads(json.dumps(config_graph)))) == config_graph
    assert json.loads(json.dumps(config)) == config
    again = from_config(config, dtype="float64", seed=3)
    assert to_config(again) == config
    assert [type(layer) for layer in again] == [type(layer) for layer in model]
    assert {k: v.shape for k, v in again.state().items()} == \
        {k: v.shape for k, v in model.state().items()}
    assert all(v.dtype == np.float64 for v in again.state().values())
    assert again.forward(np.zeros((2, 2, 6, 8))).shape == (2, 5)
    # seeded: layer i from seed + i
    same, other = from_config(config, dtype="float64", seed=3), from_config(config, seed=4)
    np.testing.assert_array_equal(same[0].weight, again[0].weight)
    assert not np.array_equal(other[0].weight, again[0].weight.astype(np.float32))
    assert not np.array_equal(from_config(config[-2:-1], seed=2)[0].weight, again[-2].weight)


@pytest.mark.parametrize("config, match", [
    ([], r"a model config is a non-empty list of layers. Received: \[\]"),
    ({"kind": "relu"}, r"non-empty list of layers. Received: \{'kind': 'relu'\}"),
    ([{"kind": "relu"}, {"kind": "mish"}], r"layer 1: kind must be one of \[.*'batchnorm2d'.*\]."
                                           r" Received: \{'kind': 'mish'\}"),
    ([["relu"]], r"layer 0: kind must be one of .*Received: \['relu'\]"),
    ([{"kind": "dense", "in_features": 3, "units": 2}],
     r"layer 0 \(dense\): .*'units'. Received: \{'kind': 'dense'"),
    ([{"kind": "relu"}, {"kind": "dropout", "p": 2.0}],
     r"layer 1 \(dropout\): p must be a probability in \[0, 1\]. Received: p=2.0$"),
    ([{"kind": "batchnorm2d", "num_features": 0}], r"layer 0 \(batchnorm2d\): num_features"),
])
def test_from_config_errors_name_the_layer(config, match):
    from skylark.models import from_config

    with pytest.raises(ValueError, match=match):
        from_config(config)


MODULE = '''
import skylark as sk

def small():
    net = sk.Sequential(sk.Conv2D(1, 2, 3, seed=1), sk.BatchNorm2d(2), sk.Tanh(), sk.Flatten(),
                        sk.Dense(2 * 6 * 6, 10, seed=2))
    net[1].running_var[...] = 4.0
    return net

def not_a_model():
    return [sk.ReLU()]
'''


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    (tmp_path / "skylark_test_models.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "skylark_test_models"


def write_json(tmp_path, data, name="m.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_build_model_from_a_function_keeps_its_weights_in_the_dtype(model_module):
    import importlib

    from skylark.models import build_model

    net = build_model(f"{model_module}:small", (1, 8, 8), dtype="float64")
    want = importlib.import_module(model_module).small()
    assert list(net.state()) == list(want.state())
    for k, v in want.state().items():
        assert net.state()[k].dtype == np.float64, k
        np.testing.assert_array_equal(net.state()[k], v.astype(np.float64), err_msg=k)
    assert net.training  # the fit check ran in eval mode and left it training


def test_build_model_from_a_json_file_list_or_layers(tmp_path):
    from skylark.models import build_model, to_config

    layers = [{"kind": "flatten"}, {"kind": "dense", "in_features": 64, "out_features": 10}]
    for data in (layers, {"layers": layers, "comment": "dict form"}):
        net = build_model(write_json(tmp_path, data), (1, 8, 8), seed=1, dtype="float64")
        assert to_config(net) == [layers[0], {**layers[1], "bias": True}]
        assert net[1].weight.dtype == np.float64


@pytest.mark.parametrize("what, match", [
    ("unknown_name", r"--model is one of \['densenet', .*'lenet5', .*'resnet', .*'vgg-bn'\], "
                     r"a .json file or module:function. Received: 'resnet50'"),
    ("missing_file", r"cannot read the model file '.*nowhere.json'"),
    ("bad_json", r"the model file '.*m.json' is not valid JSON"),
    ("json_without_layers", r"needs a \"layers\" list. Received: keys \['model'\]"),
    ("wrong_channels", r"model '.*m.json' does not fit inputs of shape \(1, 8, 8\): "
                       r"Conv2D expects 3 input channels"),
    ("wrong_features", r"does not fit inputs of shape \(1, 8, 8\): .*Dense"),
    ("wrong_classes", r"model '.*m.json' must end in 10 logits for this data. "
                      r"Received: output shape \(5,\)"),
    ("ends_in_a_map", r"must end in 10 logits for this data. Received: output shape \(1, 8, 8\)"),
    ("not_a_model", r"skylark_test_models:not_a_model must return a skylark Graph or "
                    r"Sequential. Received: <class 'list'>"),
    ("missing_function", r"cannot import the model function 'skylark_test_models:nope'"),
    ("missing_module", r"cannot import the model function 'no_such_module_xyz:net'"),
])
def test_build_model_errors_name_what_was_received(what, match, tmp_path, model_module):
    from skylark.models import build_model

    sources = {
        "unknown_name": "resnet50",
        "missing_file": str(tmp_path / "nowhere.json"),
        "bad_json": lambda: write_json(tmp_path, "{not json"),
        "json_without_layers": lambda: write_json(tmp_path, {"model": []}),
        "wrong_channels": lambda: write_json(tmp_path, [
            {"kind": "conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 3}]),
        "wrong_features": lambda: write_json(tmp_path, [
            {"kind": "flatten"}, {"kind": "dense", "in_features": 60, "out_features": 10}]),
        "wrong_classes": lambda: write_json(tmp_path, [
            {"kind": "flatten"}, {"kind": "dense", "in_features": 64, "out_features": 5}]),
        "ends_in_a_map": lambda: write_json(tmp_path, [{"kind": "relu"}]),
        "not_a_model": f"{model_module}:not_a_model",
        "missing_function": f"{model_module}:nope",
        "missing_module": "no_such_module_xyz:net",
    }
    source = sources[what]
    with pytest.raises(ValueError, match=match):
        build_model(source() if callable(source) else source, (1, 8, 8), num_classes=10)


def test_built_in_skylark_model():
    from skylark.models import build_model

    net = build_model("skylark", (1, 8, 8), num_classes=4, seed=2, dtype="float64")
    want = sk.skylark_cnn((1, 8, 8), num_classes=4, seed=2, dtype="float64")
    for k, v in want.params().items():
        np.testing.assert_array_equal(net.params()[k], v, err_msg=k)


def test_example_model_file_builds_and_trains_a_step():
    """docs/example_model.json (every mirrored kind) builds for 28x28 inputs and 10 classes,
    runs forward and backward in training and forward in eval, and its config is the file's."""
    from pathlib import Path

    from skylark.models import build_model, to_config
    from skylark.optim import SGD
    from skylark.train import train_step

    path = Path(__file__).resolve().parents[1] / "docs" / "example_model.json"
    net = build_model(str(path), (1, 28, 28), num_classes=10, seed=0, dtype="float64")
    assert to_config(net) == json.loads(path.read_text())["layers"]
    x, y = rng().uniform(-0.5, 0.5, (3, 1, 28, 28)), np.array([1, 5, 9])
    before = {k: v.copy() for k, v in net.state().items()}
    for layer in net:  # the same dropout masks on every run
        if isinstance(layer, sk.Dropout):
            layer.reseed(0)
    loss, _ = train_step(net, SGD(net, lr=0.1), x, y)
    assert np.isfinite(loss)
    assert all(not np.array_equal(net.state()[k], v) for k, v in before.items()), \
        "every parameter and running statistic moves in one training step"
    assert net.eval().forward(x).shape == (3, 10)
