"""The four weight files skylark exports to and imports from, one writer, reader and runner each.

A `Portable` is what every format is written from: the spec, the state (skylark layout and
names), the dtype and the per-sample input shape (C, H, W). Every layout conversion is
reference.transfer's:

- torch: `torch.save` of the state_dict of reference.runners.torch_ref.build_torch_model (skylark's
  names and layouts; BatchNorm's `num_batches_tracked` set to 0), read with weights_only=True.
- keras: Keras' own `save_weights` (.weights.h5) of the model reference.runners.keras_ref builds
  (`keras_model`), read back with `load_weights` into the same model; or, for a path ending in
  .keras, the full model in built-in Keras layers only (reference.keras_export), which loads
  with `keras.saving.load_model` and no skylark code.
- tf: a SavedModel of a tf.Module (`TFExport`) holding tf.Variables in TF's layout under Keras'
  names ("0.kernel") and the raw-TF forward (each kind's `tf` builder) as its `serve`
  signature: NHWC input -> logits.
- onnx: reference.runners.onnx_graph's graph with skylark's names as initializers, input "x" (NCHW),
  output "logits".

`run_<format>(path, p, x)` loads the file in its own framework and returns the logits of the NCHW
batch `x` (evaluation mode) for the export's verification.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .spec import build
from .transfer import (
    activation_to_keras,
    from_keras,
    from_onnx,
    from_torch,
    to_keras,
    to_torch,
)


class Portable(NamedTuple):
    spec: list
    state: dict
    dtype: str
    input_shape: tuple


# --- torch ------------------------------------------------------------------------------------


def write_torch(p: Portable, path) -> None:
    import torch

    sd = {k: torch.from_numpy(np.ascontiguousarray(v))
          for k, v in to_torch(p.state, p.spec).items()}
    for k in [k for k in p.state if k.endswith(".running_var")]:  # torch's BatchNorm counter
        sd[k.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    torch.save(sd, path)


def read_torch(path, p: Portable) -> dict:
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle that is not plain tensors, or not a torch file at all
        raise ValueError(f"cannot read a torch state_dict from {str(path)!r}: "
                         f"{str(e).splitlines()[0]}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{str(path)!r} is not a torch state_dict (a dict of tensors). "
                         f"Received: {type(sd).__name__}")
    return from_torch({k: v.detach().cpu().numpy() for k, v in sd.items()}, p.spec)


def run_torch(path, p: Portable, x) -> np.ndarray:
    import torch

    from .runners.torch_ref import build_torch_model

    net = build_torch_model(p.spec, p.input_shape, p.dtype)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    with torch.no_grad():
        return net.eval()(torch.from_numpy(x)).numpy()


# --- Keras ------------------------------------------------------------------------------------


def keras_model(p: Portable):
    """The keras.Sequential (channels_last) a .weights.h5 of `p`'s spec loads into: the Keras
    reference's model (reference.runners.keras_ref), built with fresh weights."""
    from .runners.keras_ref import KerasRunner

    runner = KerasRunner()
    runner.setup(p.spec, build(p.spec, p.dtype).state(), p.dtype, p.input_shape)
    return runner


def _full_model(path) -> bool:
    """A .keras path: a full Keras model (reference.keras_export), not .weights.h5 weights."""
    return str(path).endswith(".keras")


def write_keras(p: Portable, path) -> None:
    if _full_model(path):
        from .keras_export import write_keras_model

        return write_keras_model(p, path)
    runner = keras_model(p)
    runner.setup(p.spec, p.state, p.dtype, p.input_shape)
    runner.model.save_weights(str(path))


def _loaded_keras(path, p: Portable):
    runner = keras_model(p)
    try:
        runner.model.load_weights(str(path))
    except Exception as e:  # Keras names the layer or the shape that does not fit
        raise ValueError(f"the Keras weights {str(path)!r} do not fit the model: "
                         f"{str(e).splitlines()[0]}") from None
    return runner


def read_keras(path, p: Portable) -> dict:
    if _full_model(path):
        from .keras_export import read_keras_model

        return read_keras_model(path, p)
    return _loaded_keras(path, p).get_params()


def run_keras(path, p: Portable, x) -> np.ndarray:
    if _full_model(path):  # in a fresh process with no skylark: what a receiver runs
        from .keras_export import run_keras_model

        return run_keras_model(path, p, x)
    return _loaded_keras(path, p).predict(x)


# --- raw TensorFlow: a SavedModel -------------------------------------------------------------


def _tf_export_module(p: Portable):
    """A tf.Module: `variables_by_name` (Keras names, TF layout) and `serve` (NHWC -> logits,
    the kinds' raw-TF builders in evaluation mode)."""
    import tensorflow as tf

    from .kinds import KINDS
    from .runners.tf_ref import TFRun
    from .spec import geometry, node_of, run_graph

    geo = geometry(p.spec, p.input_shape)
    module = tf.Module(name="skylark")
    module.variables_by_name = {k: tf.Variable(v.astype(p.dtype), name=k.replace(".", "_"))
                                for k, v in to_keras(p.state, p.spec, p.input_shape).items()}
    c, h, w = p.input_shape

    own = {g.name: {} for g in geo}  # node -> its variables by Keras name
    for k, var in module.variables_by_name.items():
        own[node_of(k)][k.rsplit(".", 1)[1]] = var

    # autograph off: the graph walk is plain Python over the spec (autograph, converting the
    # walker and every builder it reaches, once mixed up two converted functions)
    @tf.function(input_signature=[tf.TensorSpec([None, h, w, c], p.dtype, name="x")],
                 autograph=False)
    def serve(x):
        run = TFRun(training=False)
        outs = run_graph(p.spec, geo, x,
                         lambda s, g, t: KINDS[s["kind"]].tf(s, g, t, own[g.name], run))
        return {"logits": outs[-1]}

    module.serve = serve
    return module


def write_tf(p: Portable, path) -> None:
    import tensorflow as tf

    module = _tf_export_module(p)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def read_tf(path, p: Portable) -> dict:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    got = {k: v.numpy() for k, v in getattr(loaded, "variables_by_name", {}).items()}
    return from_keras(got, p.spec, p.input_shape)


def run_tf(path, p: Portable, x) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return loaded.signatures["serving_default"](x=tf.constant(activation_to_keras(x)))[
        "logits"].numpy()


# --- ONNX -------------------------------------------------------------------------------------


def write_onnx(p: Portable, path) -> None:
    import onnx

    from .runners.onnx_graph import build_onnx_model

    model = build_onnx_model(p.spec, p.state, p.dtype, p.input_shape)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def read_onnx(path, p: Portable) -> dict:
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ValueError(f"cannot read an ONNX model from {str(path)!r}: "
                         f"{str(e).splitlines()[0]}") from None
    return from_onnx({t.name: numpy_helper.to_array(t) for t in model.graph.initializer}, p.spec)


def run_onnx(path, p: Portable, x) -> np.ndarray:
    from .runners.onnx_ref import inference_session

    return inference_session(str(path)).run(["logits"], {"x": x})[0]


FORMATS = {
    "torch": (write_torch, read_torch, run_torch, "a torch state_dict"),
    "keras": (write_keras, read_keras, run_keras,
              "Keras weights (.weights.h5) or a full Keras model (.keras)"),
    "tf": (write_tf, read_tf, run_tf, "a TensorFlow SavedModel"),
    "onnx": (write_onnx, read_onnx, run_onnx, "an ONNX model"),
}

__all__ = ["FORMATS", "Portable", "keras_model"]
