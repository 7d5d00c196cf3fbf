"""`skylark export --to keras --out model.keras`: a FULL Keras model in built-in layers only,
which a receiver loads with keras.saving.load_model and no skylark code (reference.keras_export).

Every check runs the file the way a receiver would, or states why not: a fresh `python -I`
process (no PYTHONPATH, no current folder) loads it with safe_mode=True and must import no
skylark module; its logits are held to the bar `skylark check` uses for the logits
(reference.budgets, as every other export's verification).
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import needs

import skylark as sk
from reference import porting
from reference.harness import Case, compare_tensors
from reference.inputs import informative_state, make_batch
from reference.spec import describe, node_names
from skylark.cli import main
from skylark.models import build_model

pytestmark = pytest.mark.keras

ALL_MODELS = ["skylark", "lenet5", "vgg-bn", "resnet", "mobilenet-v2", "densenet", "shufflenet",
              "inception", "efficientnet"]


@pytest.fixture(scope="module")
def keras():
    needs("keras")
    import keras

    return keras


def _net(name, dtype="float32"):
    shape = (1, 28, 28) if name in ("skylark", "lenet5") else (3, 32, 32)
    net = build_model(name, shape, dtype=dtype)
    net.load_state(informative_state(describe(net), net.state(), 0))
    return net, shape


def _classes(path) -> list[str]:
    """Every (module, class) a .keras file's config.json names."""
    with zipfile.ZipFile(path) as z:
        cfg = json.loads(z.read("config.json"))
    out = []

    def walk(v):
        if isinstance(v, dict):
            if "class_name" in v and "module" in v:
                out.append(f"{v['module']}.{v['class_name']}")
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(cfg)
    return out


def _within_bar(p, kind, got):
    """compare_tensors' row for the logits of batch `kind` against numpy's."""
    k = got.shape[1]
    x, labels, cot = make_batch(kind, 2, p.input_shape, k, 0, p.dtype)
    case = Case(p.spec, p.state, p.dtype, p.input_shape, x, labels, cot, training=False)
    last = f"out.{node_names(p.spec)[-1]}"
    return compare_tensors("keras", case.ref, {last: got}, case.budget,
                           {"forward": [last], "loss": [], "cot": []})["rows"][0]


@pytest.mark.slow
def test_every_model_loads_without_skylark(keras, tmp_path):
    """Every built-in and zoo model written as .keras, then ALL run by one fresh process with
    no skylark (one process: TensorFlow's start-up paid once): built-in classes only, and the
    logits of a random and a ties batch within the check's bar."""
    from reference.keras_export import run_keras_models, write_keras_model

    jobs, ports = [], []
    for name in ALL_MODELS:
        net, shape = _net(name)
        p = porting.portable(net, shape)
        path = tmp_path / f"{name}.keras"
        write_keras_model(p, path)
        bad = [c for c in _classes(path) if not c.startswith("keras.")]
        assert not bad, (name, bad)
        for kind in ("random", "ties"):
            jobs.append((path, make_batch(kind, 2, shape, 10, 0, "float32")[0], "float32"))
            ports.append((name, kind, p))
    for (name, kind, p), got in zip(ports, run_keras_models(jobs), strict=True):
        row = _within_bar(p, kind, got)
        assert row["ok"], (name, kind, row)


@pytest.mark.slow
def test_export_command_writes_a_verified_full_model(keras, tmp_path, capsys):
    """The command: a checkpoint to model.keras, verified on the spot, no temporary left; the
    .weights.h5 suffix still writes weights only."""
    net = sk.skylark_cnn((1, 8, 8))
    net.load_state(informative_state(describe(net), net.state(), 0))
    ck = tmp_path / "m.npz"
    net.save(ck, metadata={"dataset": "digits"})
    out = tmp_path / "model.keras"
    assert main(["export", str(ck), "--to", "keras", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verified: loaded in a fresh Keras process with no skylark" in text, text
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.npz", "model.keras"]
    model = keras.saving.load_model(str(out), compile=False, safe_mode=True)
    assert [type(layer).__module__.split(".")[0] for layer in model.layers] == \
        ["keras"] * len(model.layers)
    weights = porting.export_weights(ck, "keras", tmp_path / "w.weights.h5")
    assert weights["verification"]["ok"] and zipfile.is_zipfile(out)


def _odd_graph(dtype):
    """The layers whose Keras reference uses custom classes: max-pooling with int padding
    (-inf pads), a strided dilated conv, a channel slice, dropout, stochastic depth,
    BatchNorm; and per-channel rescaling and zero padding."""
    g = sk.Graph()
    g.add("scale", sk.Rescaling([0.5, 2.0], [0.25, -0.1]))
    g.add("pad", sk.ZeroPad2d([1, 0, 2, 1]))
    g.add("conv", sk.Conv2D(2, 6, 3, padding=1, dtype=dtype, seed=1))
    g.add("sd", sk.StochasticDepth(0.2))
    g.add("bn", sk.BatchNorm2d(6, dtype=dtype))
    g.add("pool", sk.MaxPool2D(3, 2, padding=1))
    g.add("dil", sk.Conv2D(6, 4, 3, stride=2, padding="same", dilation=2, dtype=dtype, seed=2))
    g.add("half", sk.ChannelSlice(0, 2))
    g.add("drop", sk.Dropout(0.3))
    g.add("gap", sk.GlobalAvgPool2D())
    g.add("fc", sk.Dense(2, 3, dtype=dtype, seed=3))
    g.load_state(informative_state(describe(g), g.state(), 0))
    return g


def test_custom_layers_become_exact_builtins(keras, tmp_path):
    """In float64, in process (the saved file loaded back): the built-in replacements compute
    what numpy computes within 1e-10 relative (float64: sums of <= 54 terms in another order,
    ~1e-14; a zero in a max window of the ties batch's -0.5 background, a wrong subsample or
    slice would move the logits by O(1))."""
    from reference.keras_export import write_keras_model

    net = _odd_graph("float64")
    p = porting.portable(net, (2, 11, 11))
    path = tmp_path / "odd.keras"
    write_keras_model(p, path)
    assert all(c.startswith("keras.") for c in _classes(path))
    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    for kind in ("random", "ties"):
        x = make_batch(kind, 2, (2, 11, 11), 3, 0, "float64")[0]
        want = net.eval().forward(x)
        got = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
        assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max(), kind


def test_zero_padding_would_fail(keras, tmp_path, monkeypatch):
    """The -inf padding matters on the ties batch: the same export with the pool's padding
    made plain ZeroPadding2D gives other logits, so the test above can fail."""
    from reference import keras_export

    def zeros_only(self, h, pads, name):
        t, b, l, r = pads
        return keras.layers.ZeroPadding2D(((t, b), (l, r)), name=name, dtype=self.dtype)(h)

    net = _odd_graph("float64")
    p = porting.portable(net, (2, 11, 11))
    monkeypatch.setattr(keras_export._Builder, "_neg_inf_pad", zeros_only)
    model = keras_export.builtin_keras_model(p)
    x = make_batch("ties", 2, (2, 11, 11), 3, 0, "float64")[0]
    want = net.eval().forward(x)
    got = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    assert np.abs(got - want).max() > 1e-3 * np.abs(want).max()


def test_refused_when_builtins_cannot_say_it(keras, tmp_path):
    """count_include_pad=False with int padding has no built-in Keras layer: one line naming
    the node, nothing written (.weights.h5 still exports it)."""
    net = sk.Sequential(sk.Conv2D(1, 2, 3, seed=0), sk.AvgPool2D(3, 2, padding=1,
                                                                 count_include_pad=False),
                        sk.Flatten(), sk.Dense(2 * 3 * 3, 2, seed=1))
    out = tmp_path / "x.keras"
    with pytest.raises(ValueError, match=r"the avgpool2d node '1' needs RealCellsAvgPool2D, "
                                         r"which built-in Keras layers cannot say") as e:
        porting.export_weights(net, "keras", out, input_shape=(1, 8, 8))
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_round_trip_through_the_importer(keras, tmp_path):
    """A .keras export imported back (reference.importers.keras_source) is the same graph's
    function: its logits equal the original's within 1e-10 relative (float64)."""
    from reference.importers.keras_source import import_keras
    from reference.keras_export import write_keras_model

    net, shape = _net("skylark", "float64")
    p = porting.portable(net, shape)
    write_keras_model(p, tmp_path / "cnn.keras")
    imp = import_keras(str(tmp_path / "cnn.keras"))
    x = make_batch("random", 2, shape, 10, 0, "float64")[0]
    want = net.eval().forward(x)
    got = imp.graph("float64").eval().forward(x)
    assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()
    assert imp.origin[imp.spec[0]["name"]] == "n_0"  # the export names layers after the nodes
