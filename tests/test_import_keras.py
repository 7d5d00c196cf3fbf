"""Importing a Keras model as its author wrote it (reference.importers.keras_source): every
import reproduces the Keras model's own logits and input gradient in skylark; what skylark cannot
express is listed, all at once; hostile or damaged .keras files are one-line errors, fast.

Bound: the Keras models are float64, so both sides compute the same sums in float64 in their own
order. A sum of n terms of magnitude <= M differs by at most ~n * eps64 * M between two orders
(eps64 = 2.2e-16); the longest sums here have under 2,000 terms (a 3x3x64 conv, a dense over
a flattened map), so the worst honest difference is ~4e-13 relative to the largest logit. 1e-10
(the float64 bar `skylark check` uses for the logits) leaves that margin while any layout or
mapping mistake (a kernel transposed, HWC rows read as CHW, a wrong padding side, a wrong
activation) moves the logits by O(1) relative and fails by orders of magnitude.
"""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest
from conftest import needs

from reference.importers import ImportFileError, UnsupportedError
from reference.inputs import make_batch
from reference.kinds import KINDS
from reference.transfer import nchw_to_nhwc, nhwc_to_nchw

pytestmark = pytest.mark.keras

REL = 1e-10  # float64 logits and input gradients: the module docstring's bound
# Two Keras activations on TensorFlow hold a FLOAT32 constant even in float64: leaky_relu is
# tf.nn.leaky_relu, whose slope 0.2 becomes 0.2 + 3e-9 (negative outputs move by 1.5e-8
# relative), and gelu is tf.nn.gelu, whose constants go through float32 (measured 3.6e-9
# relative here). The import keeps the values the author wrote; Keras' own rounding is bounded
# by 2e-8, still 1e5 times below what a wrong mapping moves (gelu's tanh form: ~1e-3).
F32_CONSTANT_REL = 2e-8
NEW_KINDS = pytest.mark.skipif(
    not {"zeropad2d", "rescaling", "stochasticdepth"} <= set(KINDS),
    reason="zeropad2d, rescaling and stochasticdepth kinds not merged into this branch yet")


@pytest.fixture(scope="module")
def keras():
    needs("keras")
    import keras

    return keras


def _randomize(model, seed=0):
    """Every weight drawn at random (BatchNorm's variance positive), so no default (ones,
    zeros) hides a swapped or untransposed weight."""
    import keras
    from keras.layers import DepthwiseConv2D as DEPTHWISE

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for v in layer.weights:
            # BatchNorm: away from 1, 0, 0, 1, yet close enough to them that the input still
            # steers the logits of a 100-layer net (not the statistics alone)
            if "variance" in v.path:
                v.assign(rng.uniform(0.5, 2.0, v.shape))
            elif "gamma" in v.path:
                v.assign(rng.uniform(0.5, 1.5, v.shape))
            elif "moving_mean" in v.path or "beta" in v.path:
                v.assign(rng.uniform(-0.2, 0.2, v.shape))
            else:  # He-like scale: the signal neither dies nor explodes through the depth
                fan_in = np.prod(v.shape[:2] if isinstance(layer, DEPTHWISE) else v.shape[:-1])
                v.assign(rng.normal(0, np.sqrt(2 / max(1, fan_in)), v.shape))
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # its call reads mean/variance copies made here, not the
            # variables (a saved file holds the variables)
    return model


def _keras_logits_and_grad(model, x, cot):
    """The Keras model's output and d<output, cot>/dx (NCHW in, NCHW out), TensorFlow autodiff."""
    import tensorflow as tf

    xt = tf.constant(nchw_to_nhwc(x))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt, training=False)
    dx = tape.gradient(y, xt, output_gradients=tf.constant(cot))
    return y.numpy(), nhwc_to_nchw(dx.numpy())


def _worst(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def assert_reproduces(model, imp, batch=2, seed=0, rel=REL):
    """skylark's import gives Keras' logits and input gradient (random cotangent) on a random
    and a tie-heavy batch, within REL of the largest value."""
    net = imp.graph("float64")
    net.eval()
    k = imp.spec and net.forward(np.zeros((1, *imp.input_shape))).shape[1]
    out = {}
    for kind in ("random", "ties"):
        x, _, cot = make_batch(kind, batch, imp.input_shape, k, seed, "float64")
        cot = np.random.default_rng(seed + 1).normal(size=cot.shape)
        want, want_dx = _keras_logits_and_grad(model, x, cot)
        got = net.forward(x)
        got_dx = net.backward(cot)
        out[kind] = (_worst(got, want), _worst(got_dx, want_dx))
        assert out[kind][0] <= rel, (kind, "logits", out[kind])
        assert out[kind][1] <= rel, (kind, "input gradient", out[kind])
    return out


def _import(model):
    from reference.importers.keras_source import import_keras

    return import_keras(model)


# --- models as their authors write them --------------------------------------------------------


def _lenet(keras, dtype="float64"):
    L = keras.layers
    return keras.Sequential([
        keras.Input((14, 14, 3), dtype=dtype),
        L.Conv2D(6, 3, activation="relu", dtype=dtype, name="c1"),
        L.MaxPooling2D(2, dtype=dtype),
        L.Conv2D(8, 3, strides=2, padding="same", activation="tanh", dtype=dtype),
        L.Flatten(dtype=dtype),  # HWC order in Keras: the Dense rows must be permuted
        L.Dense(16, activation="relu", dtype=dtype, name="fc1"),
        L.Dropout(0.3, dtype=dtype),
        L.Dense(5, dtype=dtype),
    ], name="lenet")


def _mobile_block(keras, dtype="float64", head="linear"):
    L = keras.layers
    i = keras.Input((13, 13, 3), dtype=dtype)
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, dtype=dtype, name="stem")(i)
    x = L.BatchNormalization(momentum=0.9, epsilon=1e-3, dtype=dtype, name="stem_bn")(x)
    x = L.ReLU(6.0, dtype=dtype)(x)
    d = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", dtype=dtype, name="dw")(x)
    d = L.BatchNormalization(dtype=dtype, name="dw_bn")(d)
    d = L.Activation("swish", dtype=dtype)(d)
    s = L.GlobalAveragePooling2D(dtype=dtype, name="se_squeeze")(d)
    s = L.Reshape((1, 1, 16), dtype=dtype, name="se_reshape")(s)
    s = L.Conv2D(4, 1, activation="relu", dtype=dtype, name="se_reduce")(s)
    s = L.Conv2D(16, 1, activation="hard_sigmoid", dtype=dtype, name="se_expand")(s)
    d = L.Multiply(dtype=dtype, name="se_excite")([d, s])
    p = L.Conv2D(8, 1, use_bias=False, dtype=dtype, name="project")(d)
    x = L.Add(dtype=dtype, name="residual")([x, p])
    m = L.MaxPooling2D(3, 2, padding="same", dtype=dtype)(x)
    a = L.AveragePooling2D(3, 2, padding="same", dtype=dtype)(x)  # 7x7: pads 1 and 1
    x = L.Concatenate(dtype=dtype)([m, a])
    x = L.Conv2D(12, 2, strides=2, padding="same", dilation_rate=1, dtype=dtype)(x)  # odd: 4
    x = L.GlobalAveragePooling2D(dtype=dtype)(x)
    x = L.Dense(6, activation=head, dtype=dtype, name="logits")(x)
    return keras.Model(i, x, name="mobile_block")


def test_sequential_flatten_dense(keras):
    model = _randomize(_lenet(keras))
    imp = _import(model)
    assert imp.source == "keras" and imp.input_shape == (3, 14, 14)
    assert [s["kind"] for s in imp.spec] == [
        "conv2d", "relu", "maxpool2d", "conv2d", "tanh", "flatten", "dense", "relu",
        "dropout", "dense"]
    assert imp.origin["c1_act"] == "c1"  # the activation node says where it came from
    assert_reproduces(model, imp)


def test_flatten_dense_rows_are_permuted(keras):
    """The Dense after a Flatten: the same kernel read without the HWC -> CHW row permutation
    gives other logits (the bound is not loose enough to hide the trap)."""
    from reference.transfer import to_keras

    model = _randomize(_lenet(keras))
    imp = _import(model)
    kern = to_keras(imp.state, imp.spec, imp.input_shape)["fc1.kernel"]
    assert np.array_equal(kern, model.get_layer("fc1").kernel.numpy())  # round trip exact
    plain = dict(imp.state, **{"fc1.weight": kern.T})  # rows left in HWC order
    net, x = imp.graph("float64"), make_batch("random", 2, (3, 14, 14), 5, 0, "float64")[0]
    good = _keras_logits_and_grad(model, x, np.zeros((2, 5)))[0]
    net.load_state(plain)
    assert _worst(net.eval().forward(x), good) > 1e-3


def test_functional_mobile_block(keras):
    """Strided "same" convs (odd sizes: TF's asymmetric pads), BN, depthwise with a
    multiplier, SE (GlobalAveragePooling2D -> Reshape -> convs -> Multiply), residual Add,
    pools with "same", Concatenate, GlobalAveragePooling2D -> Dense."""
    model = _randomize(_mobile_block(keras))
    imp = _import(model)
    kinds = {s["name"]: s["kind"] for s in imp.spec}
    assert kinds["se_squeeze"] == "adaptiveavgpool2d" and "se_reshape" not in kinds
    assert kinds["dw"] == "conv2d" and imp.spec[3]["groups"] == 8
    bn = next(s for s in imp.spec if s["name"] == "stem_bn")
    assert bn["momentum"] == 0.1 and bn["eps"] == 1e-3  # torch's momentum: 1 - Keras'
    assert any("BIASED" in n for n in imp.notes)
    assert_reproduces(model, imp)


def test_depthwise_multiplier_order(keras):
    """DepthwiseConv2D(depth_multiplier=3): output channel c*M + m is input channel c's m-th
    filter; a one-hot kernel shows each output reads the input channel torch's grouped conv
    gives it."""
    L = keras.layers
    model = keras.Sequential([keras.Input((5, 5, 2), dtype="float64"),
                              L.DepthwiseConv2D(1, depth_multiplier=3, use_bias=False,
                                                dtype="float64"),
                              L.GlobalAveragePooling2D(dtype="float64")])
    kern = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)  # filter (c, m) scales by 3c + m + 1
    model.layers[0].kernel.assign(kern)
    imp = _import(model)
    w = imp.state[f"{imp.spec[0]['name']}.weight"]
    assert w.shape == (6, 1, 1, 1) and list(w.reshape(-1)) == [1, 2, 3, 4, 5, 6]
    assert_reproduces(model, imp)


@pytest.mark.parametrize("act", ["relu", "relu6", "sigmoid", "tanh", "swish", "silu",
                                 "hard_swish", "hard_silu", "hard_sigmoid", "gelu",
                                 "leaky_relu", "linear"])
def test_activations(keras, act):
    """Each Keras activation string maps to the skylark kind computing the same function
    (Keras 3's hard_sigmoid is relu6(x + 3) / 6, torch's; "gelu" is the exact erf form, whose
    tanh approximation differs by ~1e-3 and would fail the bound). Inputs scaled to cross
    every kink (-3, 0, 3, 6)."""
    L = keras.layers
    model = keras.Sequential([keras.Input((4, 4, 2), dtype="float64"),
                              L.Conv2D(3, 1, activation=act, dtype="float64"),
                              L.Flatten(dtype="float64"), L.Dense(4, dtype="float64")])
    _randomize(model)
    model.layers[0].kernel.assign(model.layers[0].kernel * 20)  # values well past +-6
    imp = _import(model)
    assert_reproduces(model, imp, rel=F32_CONSTANT_REL if act in ("leaky_relu", "gelu") else REL)


def test_relu_and_leaky_layers(keras):
    L = keras.layers
    model = keras.Sequential([
        keras.Input((6, 6, 2), dtype="float64"),
        # slopes exact in float32: tf.nn.leaky_relu rounds its slope to float32 (F32_CONSTANT_REL)
        L.Conv2D(4, 3, dtype="float64"), L.LeakyReLU(0.125, dtype="float64"),
        L.Conv2D(4, 1, dtype="float64"), L.ReLU(negative_slope=0.25, dtype="float64"),
        L.Conv2D(4, 1, dtype="float64"), L.ReLU(dtype="float64"),
        L.Identity(dtype="float64"), L.GlobalAveragePooling2D(dtype="float64")])
    _randomize(model)
    imp = _import(model)
    assert [s["kind"] for s in imp.spec][1::2][:3] == ["leaky_relu", "leaky_relu", "relu"]
    assert imp.spec[1]["negative_slope"] == 0.125
    assert_reproduces(model, imp)


def test_final_softmax_dropped_with_a_note(keras):
    """A classifier's softmax head: the graph stops at the logits (skylark's losses take
    logits); the note says so and Keras' output is the softmax of the import's."""
    model = _randomize(_mobile_block(keras, head="softmax"))
    imp = _import(model)
    assert imp.spec[-1]["kind"] == "dense"
    assert any("final softmax" in n for n in imp.notes)
    x = make_batch("random", 2, imp.input_shape, 6, 0, "float64")[0]
    z = imp.graph("float64").eval().forward(x)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert _worst(probs, model(nchw_to_nhwc(x)).numpy()) <= REL


def test_float32_model_keeps_float32_weights(keras):
    model = _randomize(_lenet(keras, "float32"))
    imp = _import(model)
    assert {v.dtype for v in imp.state.values()} == {np.dtype("float32")}
    x = make_batch("random", 2, imp.input_shape, 5, 0, "float32")[0]
    want = model(nchw_to_nhwc(x)).numpy()
    # float32: both sum <= 54 terms of |w x| <= ~2 in their own order: 1e-5 relative is
    # ~100 eps32, room for the ~54-term sums' rounding, far below any layout error (O(1))
    assert _worst(imp.graph("float32").eval().forward(x), want) <= 1e-5


@NEW_KINDS
def test_preprocessing_and_stochastic_depth(keras):
    """Rescaling, Normalization (per channel), ZeroPadding2D (asymmetric) then a "valid"
    strided conv, Dropout(noise_shape=(None, 1, 1, 1)) (stochastic depth) on a residual."""
    L = keras.layers
    i = keras.Input((9, 9, 3), dtype="float64")
    # 0.25, not 1/255: Keras' Rescaling on TensorFlow takes its scale through float32 (the
    # rescaling kind's trap), 4e-9 relative off in float64; 0.25 is exact in both
    x = L.Rescaling(0.25, offset=-0.5, dtype="float64")(i)
    norm = L.Normalization(mean=[0.1, 0.2, 0.3], variance=[0.5, 2.0, 1.5], dtype="float64")
    x = norm(x)
    x = L.ZeroPadding2D(((0, 1), (1, 2)), dtype="float64")(x)
    x = L.Conv2D(4, 3, strides=2, dtype="float64")(x)
    y = L.Conv2D(4, 3, padding="same", dtype="float64")(x)
    y = L.Dropout(0.2, noise_shape=(None, 1, 1, 1), dtype="float64")(y)
    x = L.Add(dtype="float64")([x, y])
    x = L.Flatten(dtype="float64")(x)
    x = L.Dense(3, dtype="float64")(x)
    model = _randomize(keras.Model(i, x))
    imp = _import(model)
    kinds = [s["kind"] for s in imp.spec]
    assert kinds[:3] == ["rescaling", "rescaling", "zeropad2d"]
    assert imp.spec[2]["padding"] == [1, 2, 0, 1]  # [left, right, top, bottom]
    assert "stochasticdepth" in kinds
    assert_reproduces(model, imp)


# --- what skylark cannot express ---------------------------------------------------------------


def test_every_unsupported_item_listed(keras):
    from reference.importers.keras_source import list_unsupported

    L = keras.layers
    i = keras.Input((8, 8, 3))
    x = L.UpSampling2D(name="up")(i)
    x = L.Conv2D(4, 3, activation="elu", name="c_elu")(x)
    x = L.ReLU(threshold=0.5, name="thr")(x)
    y = L.GlobalMaxPooling2D(name="gmp")(x)
    x = L.Concatenate(axis=1, name="cat_h")([x, x])
    x = L.BatchNormalization(axis=1, name="bn_h")(x)
    x = L.Dense(3, name="dense4d")(x)
    x = L.Flatten()(x)
    x = L.Concatenate(name="j")([x, y])
    model = keras.Model(i, x)
    items = list_unsupported(model)
    for needle in ("layer=UpSampling2D at 'up'", "activation='elu' of Conv2D at 'c_elu'",
                   "ReLU.threshold=0.5 at 'thr'", "layer=GlobalMaxPooling2D at 'gmp'",
                   "Concatenate.axis=1 at 'cat_h'", "BatchNormalization.axis=1",
                   "Dense on a 3-D input at 'dense4d'"):
        assert any(needle in it for it in items), (needle, items)
    with pytest.raises(UnsupportedError, match=r"Received: layer=UpSampling2D at 'up' \(no skylark "
                                               r"kind\) \(and \d+ more") as e:
        _import(model)
    assert "\n" not in str(e.value) and len(e.value.items) == len(items)


def test_mid_graph_softmax_and_shared_layer(keras):
    from reference.importers.keras_source import list_unsupported

    L = keras.layers
    i = keras.Input((6, 6, 2))
    conv = L.Conv2D(2, 1, padding="same", name="shared")
    x = conv(conv(i))
    x = L.Softmax(name="mid")(x)
    x = L.Flatten()(x)
    items = list_unsupported(keras.Model(i, L.Dense(2)(x)))
    assert any("'shared' called twice" in it for it in items), items
    assert any("only a final softmax" in it and "'mid'" in it for it in items), items


def test_unfixed_input_size(keras):
    L = keras.layers
    model = keras.Sequential([keras.Input((None, None, 3)), L.Conv2D(2, 3),
                              L.GlobalAveragePooling2D()])
    with pytest.raises(UnsupportedError, match=r"input_shape=\(None, None, None, 3\)"):
        _import(model)


# --- files ------------------------------------------------------------------------------------


def _save(model, path):
    model.save(str(path))
    return path


def _rewrite(src, dst, edit):
    """A copy of the .keras zip `src` with member texts changed by edit(name, bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, edit(item.filename, zin.read(item.filename)))
    return dst


def test_from_file_and_from_function(keras, tmp_path, monkeypatch):
    model = _randomize(_lenet(keras))
    path = _save(model, tmp_path / "lenet.keras")
    imp = _import(str(path))
    assert_reproduces(model, imp)
    mod = tmp_path / "kmodels.py"
    mod.write_text("import keras\n\ndef make():\n    return keras.saving.load_model("
                   f"{str(path)!r}, compile=False)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imp2 = _import("kmodels:make")
    assert all(np.array_equal(imp.state[k], imp2.state[k]) for k in imp.state)


def _hostile(keras, tmp_path):
    """name -> (a hostile or damaged file, the message it must give)."""
    L = keras.layers
    good = _save(keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(2, 3), L.Flatten()]),
                 tmp_path / "good.keras")
    out = {}

    def custom(name, data):  # an unregistered custom layer class, as saved by its author
        if name != "config.json":
            return data
        cfg = json.loads(data)
        layer = cfg["config"]["layers"][-1]
        layer.update(module="evilpkg.layers", class_name="Backdoor",
                     registered_name="evilpkg>Backdoor")
        return json.dumps(cfg).encode()

    out["custom"] = (_rewrite(good, tmp_path / "custom.keras", custom),
                     r"cannot be loaded safely. Received: class 'evilpkg>Backdoor' from module "
                     r"'evilpkg.layers'")
    lam = keras.Sequential([keras.Input((4, 4, 1)), L.Lambda(lambda t: t * 2, name="lam")])
    out["lambda"] = (_save(lam, tmp_path / "lambda.keras"),
                     r"Received: Lambda layer 'lam' \(loading it would run the code")
    data = good.read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    out["truncated"] = (tmp_path / "truncated.keras",
                        r"not a \.keras archive \(not a readable zip: another format, or "
                        r"truncated or corrupt\)")
    damaged = bytearray(data)  # a byte flipped inside a member: the zip directory still reads
    at = data.find(b"PK\x03\x04") + 60
    damaged[at] ^= 0xFF
    (tmp_path / "damaged.keras").write_bytes(bytes(damaged))
    out["damaged"] = (tmp_path / "damaged.keras", r"damaged \.keras archive|Keras cannot load")
    (tmp_path / "notzip.keras").write_text("<html>not a model</html>")
    out["notzip"] = (tmp_path / "notzip.keras", r"not a \.keras archive")
    out["missing"] = (tmp_path / "nothing.keras", r"no Keras model file at this path")
    return out


@pytest.mark.parametrize("case", ["custom", "lambda", "truncated", "damaged", "notzip",
                                  "missing"])
def test_hostile_files_one_line_fast(keras, tmp_path, case):
    path, message = _hostile(keras, tmp_path)[case]
    t0 = time.perf_counter()
    with pytest.raises(ImportFileError, match=message) as e:
        _import(str(path))
    assert time.perf_counter() - t0 < 5  # refused before (or while) Keras reads: no hang
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("version", ["2.15.0", "4.0.0", "3.0.0"])
def test_other_keras_version(keras, tmp_path, version):
    """metadata.json names another Keras. Keras 3.15 does not check it and would load the file
    with its own meaning: another MAJOR version is refused in one line (nothing read); another
    release of this major version is imported (the layers are still checked one by one) with a
    note naming both versions."""
    model = _randomize(_lenet(keras))
    good = _save(model, tmp_path / "m.keras")

    def edit(name, data):
        if name != "metadata.json":
            return data
        return json.dumps({**json.loads(data), "keras_version": version}).encode()

    path = str(_rewrite(good, tmp_path / "old.keras", edit))
    if version.split(".")[0] != keras.__version__.split(".")[0]:
        with pytest.raises(ImportFileError, match=f"Received: keras_version={version}") as e:
            _import(path)
        assert "\n" not in str(e.value)
        return
    imp = _import(path)
    assert any(f"saved by Keras {version}; read by Keras {keras.__version__}" in n
               for n in imp.notes)
    assert_reproduces(model, imp)


# --- Keras Applications ------------------------------------------------------------------------

APPS = {"MobileNetV2": (96, 96), "ResNet50": (64, 64), "DenseNet121": (64, 64),
        "EfficientNetB0": (64, 64)}
# the skylark kinds each one needs beyond the original set (EfficientNet: its Rescaling and
# Normalization preprocessing, and stochastic depth on its residual blocks)
APP_KINDS = {"MobileNetV2": {"zeropad2d"}, "ResNet50": {"zeropad2d"},
             "DenseNet121": {"zeropad2d"},
             "EfficientNetB0": {"zeropad2d", "rescaling", "stochasticdepth"}}


@pytest.mark.slow
@pytest.mark.parametrize("app", [
    pytest.param(a, marks=pytest.mark.skipif(not APP_KINDS[a] <= set(KINDS),
                                             reason=f"kinds {sorted(APP_KINDS[a])} not all "
                                                    f"merged into this branch yet"))
    for a in APPS])
def test_keras_applications(keras, tmp_path, app):
    """keras.applications.<app>(weights=None, classifier_activation=None), built in float64,
    saved to .keras and imported from the file, reproduces Keras' logits within REL (the
    module docstring's float64 bound: these nets' longest sums, 3x3x1152 or 1x1x1024 taps,
    stay under 1e4 terms, ~2e-12 relative)."""
    h, w = APPS[app]
    model = _application(keras, app, (h, w, 3), classifier_activation=None)
    path = _save(model, tmp_path / f"{app}.keras")
    t0 = time.perf_counter()
    imp = _import(str(path))
    seconds = time.perf_counter() - t0
    net = imp.graph("float64").eval()
    for kind in ("random", "ties"):
        x = make_batch(kind, 2, imp.input_shape, 10, 0, "float64")[0]
        want = model(nchw_to_nhwc(x), training=False).numpy()
        err = _worst(net.forward(x), want)
        print(f"{app}: {kind} worst relative error {err:.2e} (max |logit| "
              f"{np.abs(want).max():.3g}), import {seconds:.1f} s")
        assert err <= REL, (app, kind, err)


def _application(keras, app, shape, **kwargs):
    """A Keras Application in float64 (Keras builds them in the global dtype policy; floatx
    alone is not enough once any layer has read the policy), random weights."""
    keras.utils.set_random_seed(0)
    stock = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float64")
    keras.config.set_floatx("float64")  # the Input layer's dtype
    try:
        model = getattr(keras.applications, app)(weights=None, input_shape=shape, classes=10,
                                                 **kwargs)
    finally:
        keras.config.set_dtype_policy(stock[0])
        keras.config.set_floatx(stock[1])
    assert {layer.dtype for layer in model.layers} == {"float64"}
    return _randomize(model)  # Keras' init: BN at 1, 0, 0, 1 and logits near 0 hide bugs


@pytest.mark.slow
def test_keras_application_softmax_head(keras):
    """The default classifier (softmax): the import stops at the logits, says so in its
    notes, and Keras' probabilities are the softmax of skylark's logits."""
    model = _application(keras, "MobileNetV2", (96, 96, 3))
    head = model.get_layer("predictions")
    head.kernel.assign(head.kernel * 10)  # a peaked softmax, not a flat one
    imp = _import(model)
    assert imp.spec[-1]["kind"] == "dense" and imp.origin[imp.spec[-1]["name"]] == "predictions"
    assert any("final softmax of 'predictions'" in n for n in imp.notes)
    x = make_batch("random", 2, imp.input_shape, 10, 0, "float64")[0]
    z = imp.graph("float64").eval().forward(x)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert probs.max() > 0.5  # a peaked softmax
    # softmax's Jacobian has infinity-norm max 2 p (1 - p) <= 1/2: the logits' bound REL *
    # max|z| moves a probability by at most half of it; the two softmaxes' own float64
    # rounding adds a few eps64 (1e-15)
    bound = 0.5 * REL * np.abs(z).max() + 1e-15
    assert np.abs(probs - model(nchw_to_nhwc(x), training=False).numpy()).max() <= bound


def test_import_command(keras, tmp_path, capsys):
    """`skylark import model.keras`: the softmax-headed model is proven against Keras' own
    pre-softmax logits and written; --list-unsupported names every refused layer."""
    from skylark.cli import main

    model = _randomize(_mobile_block(keras, "float32", head="softmax"))
    path = _save(model, tmp_path / "m.keras")
    assert main(["import", str(path), "--out", str(tmp_path / "m.npz")]) == 0
    out, err = capsys.readouterr()
    assert "verified against keras's own logits" in out and "final softmax" in err
    L = keras.layers
    bad = keras.Sequential([keras.Input((8, 8, 3)), L.UpSampling2D(name="up"),
                            L.GlobalMaxPooling2D(name="gmp")])
    _save(bad, tmp_path / "bad.keras")
    main(["import", str(tmp_path / "bad.keras"), "--list-unsupported"])
    out = capsys.readouterr().out
    assert "layer=UpSampling2D at 'up'" in out and "layer=GlobalMaxPooling2D at 'gmp'" in out
