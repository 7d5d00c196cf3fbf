"""A skylark model as a FULL Keras model file (.keras) that loads with NO skylark code.

    write_keras_model(p, "model.keras")       # p: reference.formats.Portable
    run_keras_model("model.keras", p, x)      # logits, from a fresh Python that imports no skylark

A .keras file stores each layer's class by name, not its code: a custom layer (the Keras
reference's NegInfPadding2D, MaskedDropout, UnbiasedBatchNormalization, ...; see
reference.runners.keras_layers) would make `keras.saving.load_model` fail for a receiver
without skylark, or ask them to register classes they do not have. So the file holds BUILT-IN
Keras layers only: the Keras reference's model (reference.runners.keras_ref, weights through
reference.transfer) is rebuilt layer by layer, each custom layer replaced by built-ins that
compute the same thing in evaluation mode:

- MaskedDropout -> Dropout(p) (the identity at inference; Keras' own dropout in training);
  for stochastic depth Dropout(p, noise_shape=(None, 1, 1, 1)), Keras' idiom for it (mode
  "batch": (1, 1, 1, 1)).
- UnbiasedBatchNormalization -> BatchNormalization (the same inference; Keras' biased
  running-variance update in training, as any Keras model).
- ExactLeakyReLU / ExactHardsigmoid / ExactGELU (float64 exactness on some backends) ->
  LeakyReLU / Activation("hard_sigmoid") / Activation("gelu"): the same function, with
  Keras' own float32 constants on TensorFlow (float64 exports: a few 1e-9 relative off).
- StridedDilatedConv2D -> Conv2D(stride 1, dilated) then MaxPooling2D(pool 1, stride s): a
  1x1 max pool with stride s IS the subsampling, exactly.
- NegInfPadding2D (max-pooling with int padding) -> ZeroPadding2D of x, plus a map that is 0 on
  the real cells and -MAX (the dtype's largest finite negative) on the padding: a 1x1
  DepthwiseConv2D with kernel 0 and bias 1 gives ones, ZeroPadding2D makes them a 1/0 mask,
  another with kernel MAX and bias -MAX gives 0 / -MAX. Every step is exact (x + 0 = x,
  MAX - MAX = 0), and a max window always holds a real cell, so -MAX never wins. (An input
  holding inf or nan would make 0 * x nan there.)
- ChannelSlice -> Reshape to (H, W, C, 1), Cropping3D on the channel axis, Reshape back (a flat
  input: Cropping1D), exact.
RealCellsAvgPool2D (count_include_pad=False with int padding) and DilatedMaxPool2D have no
built-in equivalent: the export is refused, naming the node.

Verification runs the written file in a NEW Python process whose sys.path holds no skylark
checkout, which loads it with safe_mode=True and checks that no skylark module was imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .transfer import activation_to_keras


class NotBuiltinError(ValueError):
    """A model with a layer that built-in Keras layers cannot say (one line, naming it)."""


def _node_name(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _clone(layer, name: str):
    """A fresh built-in layer with `layer`'s config (its class is Keras'), named `name`."""
    cfg = {**layer.get_config(), "name": name}
    return type(layer).from_config(cfg)


def _set(layer, weights) -> None:
    layer.set_weights([np.asarray(w) for w in weights])


class _Builder:
    """Applies the reference's Keras layers of one node as built-in layers."""

    def __init__(self, dtype: str) -> None:
        self.dtype, self.later = dtype, []  # (layer, weights) to set once the graph is built

    def apply(self, layer, h, name: str, s: dict, g):
        import keras

        from .runners import keras_layers as kl

        L, dt = keras.layers, self.dtype
        if isinstance(layer, L.ZeroPadding2D) and not any(map(any, layer.padding)):
            return h  # int padding 0 (a "valid" conv written with padding=0): nothing to add
        if isinstance(layer, kl.MaskedDropout):
            noise = None  # dropout: per element
            if s["kind"] == "stochasticdepth":  # one draw per sample (row) or per batch
                noise = (None, 1, 1, 1) if s.get("mode", "row") == "row" else (1, 1, 1, 1)
            return L.Dropout(layer.p, noise_shape=noise, name=name, dtype=dt)(h)
        if isinstance(layer, kl.UnbiasedBatchNormalization):
            cfg = {**layer.get_config(), "name": name}
            new = L.BatchNormalization.from_config(cfg)
            out = new(h)
            self.later.append((new, layer.get_weights()))
            return out
        if isinstance(layer, kl.ExactLeakyReLU | kl.ExactHardsigmoid | kl.ExactGELU):
            return self._activation(layer, h, name, s, g)
        if isinstance(layer, kl.StridedDilatedConv2D):
            cfg = {**layer.get_config(), "name": name, "strides": (1, 1)}
            conv = L.Conv2D.from_config(cfg)
            out = conv(h)
            self.later.append((conv, layer.get_weights()))
            return L.MaxPooling2D(1, strides=layer.subsample, name=f"{name}_sample",
                                  dtype=dt)(out)
        if isinstance(layer, kl.NegInfPadding2D):
            return self._neg_inf_pad(h, layer.pads, name)
        if isinstance(layer, kl.ChannelSlice):
            return self._slice(h, layer.start, layer.stop, name)
        if type(layer).__module__.split(".")[0] != "keras":
            raise NotBuiltinError(
                f"the {s['kind']} node {s.get('name', str(g.index))!r} needs "
                f"{type(layer).__name__}, which built-in Keras layers cannot say: a .keras "
                f"export would not load without skylark (use .weights.h5). Received: "
                f"{s!r}")
        new = _clone(layer, name)
        out = new(h)
        if layer.weights:
            self.later.append((new, layer.get_weights()))
        return out

    def _activation(self, layer, h, name: str, s: dict, g):
        """The reference's exact activations as Keras' built-in ones."""
        import keras

        from .runners import keras_layers as kl

        L, dt = keras.layers, self.dtype
        if isinstance(layer, kl.ExactLeakyReLU):
            return L.LeakyReLU(negative_slope=layer.negative_slope, name=name, dtype=dt)(h)
        if isinstance(layer, kl.ExactHardsigmoid):
            return L.Activation("hard_sigmoid", name=name, dtype=dt)(h)
        if layer.approximate != "none":
            raise NotBuiltinError(f"no built-in Keras layer computes GELU's tanh form in "
                                  f"{dt}. Received: node {s.get('name', g.index)!r}")
        return L.Activation("gelu", name=name, dtype=dt)(h)

    def _neg_inf_pad(self, h, pads, name):
        import keras

        L, dt = keras.layers, self.dtype
        t, b, l, r = pads
        c = int(h.shape[-1])
        big = float(np.finfo(dt).max)
        ones = L.DepthwiseConv2D(1, name=f"{name}_ones", dtype=dt)
        mask = L.ZeroPadding2D(((t, b), (l, r)), name=f"{name}_mask", dtype=dt)(ones(h))
        shift = L.DepthwiseConv2D(1, name=f"{name}_shift", dtype=dt)
        low = shift(mask)  # 0 on the real cells, -MAX on the padding
        self.later += [(ones, [np.zeros((1, 1, c, 1)), np.ones(c)]),
                       (shift, [np.full((1, 1, c, 1), big), np.full(c, -big)])]
        padded = L.ZeroPadding2D(((t, b), (l, r)), name=f"{name}_zeros", dtype=dt)(h)
        return L.Add(name=name, dtype=dt)([padded, low])

    def _slice(self, h, start, stop, name):
        import keras

        L, dt = keras.layers, self.dtype
        shape = tuple(int(d) for d in h.shape[1:])
        c = shape[-1]
        h = L.Reshape((*shape, 1), name=f"{name}_split", dtype=dt)(h)
        crop = L.Cropping3D(((0, 0), (0, 0), (start, c - stop)), name=f"{name}_crop",
                            dtype=dt) if len(shape) == 3 else \
            L.Cropping1D((start, c - stop), name=f"{name}_crop", dtype=dt)
        return L.Reshape((*shape[:-1], stop - start), name=name, dtype=dt)(crop(h))


def builtin_keras_model(p):
    """A keras.Model of built-in layers only with `p`'s architecture and weights (NHWC input
    "x" -> logits), layers named after the skylark nodes."""
    import keras

    from .runners.keras_ref import KerasRunner
    from .spec import geometry, node_names, run_graph

    runner = KerasRunner()  # the Keras reference's model (reference.formats.keras_model)
    runner.setup(p.spec, p.state, p.dtype, p.input_shape)  # weights via reference.transfer
    c, h, w = p.input_shape
    geo, names = geometry(p.spec, p.input_shape), node_names(p.spec)
    builder = _Builder(p.dtype)
    inp = keras.Input((h, w, c), dtype=p.dtype, name="x")

    def node(s, g, t):
        group, name = runner.groups[g.index], _node_name(names[g.index])
        for k, layer in enumerate(group):  # the last layer (the weights') is the node's name
            t = builder.apply(layer, t, name if k == len(group) - 1 else f"{name}_pre{k}", s, g)
        return t

    out = run_graph(p.spec, geo, inp, node)[-1]
    model = keras.Model(inp, out, name="skylark_export")
    for layer, weights in builder.later:
        _set(layer, weights)
    return model


def write_keras_model(p, path) -> None:
    """The full model as a .keras file (Keras' own format: config.json + weights)."""
    builtin_keras_model(p).save(str(path))


_LOADER = r"""
import json, sys
import numpy as np
import keras
for path, xin, yout in json.loads(sys.argv[1]):
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    x = np.load(xin).astype(model.inputs[0].dtype)
    np.save(yout, np.asarray(keras.ops.convert_to_numpy(model(x, training=False))))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("skylark", "reference"))))
"""


def run_keras_models(jobs) -> list[np.ndarray]:
    """The logits each .keras file gives for its NCHW batch (`jobs`: [(path, x, dtype)]),
    computed by ONE fresh Python process (`python -I`: no PYTHONPATH, no current folder, no
    user site) that must import no skylark module (RuntimeError otherwise)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = []
        for i, (path, x, dtype) in enumerate(jobs):
            xin, yout = Path(tmp) / f"x{i}.npy", Path(tmp) / f"y{i}.npy"
            np.save(xin, activation_to_keras(np.asarray(x, dtype)))
            args.append((str(Path(path).absolute()), str(xin), str(yout)))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        done = subprocess.run([sys.executable, "-I", "-c", _LOADER, json.dumps(args)], cwd=tmp,
                              env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"a fresh Keras could not run {args[0][0]!r}: {tail}")
        leaked = json.loads(done.stdout.strip().splitlines()[-1])
        if leaked:
            raise RuntimeError(f"loading {args[0][0]!r} imported skylark code: {leaked}")
        return [np.load(a[2]) for a in args]


def run_keras_model(path, p, x) -> np.ndarray:
    """The logits the .keras file at `path` gives for the NCHW batch `x`, from a fresh Python
    with no skylark (run_keras_models)."""
    return run_keras_models([(path, x, p.dtype)])[0]


def read_keras_model(path, p) -> dict:
    """The state of a .keras file written by `write_keras_model`, in skylark's layout: its
    layers are named after the skylark nodes, so the Keras reference's weights are read back
    by name."""
    import keras

    from .transfer import from_keras

    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    from .spec import node_names

    got = {}
    for name in node_names(p.spec):
        try:
            layer = model.get_layer(_node_name(name))
        except ValueError:
            continue
        for v in layer.weights:
            got[f"{name}.{v.path.rsplit('/', 1)[-1]}"] = keras.ops.convert_to_numpy(v.value)
    return from_keras(got, p.spec, p.input_shape)


__all__ = ["NotBuiltinError", "builtin_keras_model", "read_keras_model", "run_keras_model",
           "run_keras_models", "write_keras_model"]
