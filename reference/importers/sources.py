"""Where a model comes from, and the one entry point every command imports it through.

    src = open_source("net.onnx")                    # or "model.keras", "pkg.mod:make_net",
    imp = import_source(src, input_shape=(3, 64, 64))   # an nn.Module or keras.Model object
    logits = src.forward(x)                          # the source run by its own runtime (NCHW x)

A source is an ONNX file (`.onnx`), a Keras file (`.keras`), or `module:function` (called with
no arguments) returning a torch `nn.Module`, a `keras.Model` or a skylark `Graph`; a Python
object of those types is taken as it is. `forward` runs the source itself (torch in evaluation
mode, Keras with training=False, onnxruntime) on an NCHW batch, so an import can be proven
against what its author runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import Imported, ImportFileError
from .calls import call_function

FILE_KINDS = {".onnx": "onnx", ".keras": "keras"}
KINDS = ("onnx", "keras", "torch", "skylark")


@dataclass
class Source:
    """A model to import: `kind` in KINDS, `obj` the path (onnx, keras file) or the object,
    `label` what the user gave (for messages)."""

    kind: str
    obj: object
    label: str
    runtime: str = ""  # what ran `forward` where it is not the kind's own runtime

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The source's own logits for an NCHW batch `x` (evaluation mode), in x's dtype where
        the runtime can (an ONNX file runs in its own dtype)."""
        return _FORWARD[self.kind](self, x)


def is_source(text: str) -> bool:
    """Whether `--model TEXT` names something to import (not a built-in or a spec JSON)."""
    return Path(text).suffix.lower() in FILE_KINDS


def open_source(source) -> Source:
    """A Source from a path, `module:function`, or an object; ValueError naming what was
    received when it is none of them (ImportFileError for a file that is missing)."""
    if not isinstance(source, str | Path):
        return Source(_object_kind(source, repr(type(source))), source, type(source).__name__)
    text = str(source)
    suffix = Path(text).suffix.lower()
    if suffix in FILE_KINDS:
        path = Path(text)
        if not path.is_file():
            raise ImportFileError(f"cannot read the model file {text!r}: "
                                  + ("it is a folder" if path.is_dir() else "no such file"))
        if suffix == ".keras":
            return Source("keras", str(path), text)
        return Source("onnx", str(path), text)
    if ":" in text and not Path(text).exists():
        obj = call_function(text)
        return Source(_object_kind(obj, text), obj, text)
    raise ValueError(f"a model to import is a .onnx or .keras file or module:function "
                     f"returning a torch nn.Module, a keras.Model or a skylark Graph. "
                     f"Received: {text!r}")


def import_source(src: Source, *, input_shape=None, state_dict=None) -> Imported:
    """The source as an Imported (reference.importers); UnsupportedError / ImportFileError /
    ValueError, each one line, when it cannot be."""
    if state_dict is not None and src.kind != "torch":
        raise ValueError(f"--state-dict loads into a torch module. Received: a {src.kind} "
                         f"model {src.label!r}")
    if src.kind == "onnx":
        from .onnx_source import import_onnx

        return import_onnx(src.obj, input_shape=input_shape)
    if src.kind == "keras":
        from .keras_source import import_keras

        return import_keras(src.obj)
    if src.kind == "torch":
        from .torch_source import import_torch

        if input_shape is None:
            raise ValueError(f"a torch module does not record its input size: pass "
                             f"--input-shape C,H,W. Received: {src.label}")
        return import_torch(src.obj, input_shape=tuple(input_shape), state_dict=state_dict)
    return _from_skylark(src.obj, input_shape)


def unsupported(src: Source, *, input_shape=None) -> list[str]:
    """Every op, attribute or pattern of `src` skylark cannot express ([] when none)."""
    if src.kind == "onnx":
        from .onnx_source import list_unsupported

        return list_unsupported(src.obj)
    if src.kind == "keras":
        from .keras_source import list_unsupported

        return list_unsupported(src.obj)
    if src.kind == "torch":
        from .torch_source import list_unsupported

        return list_unsupported(src.obj, input_shape=tuple(input_shape or (1, 28, 28)))
    return []


# --- the pieces -----------------------------------------------------------------------------


def _object_kind(obj, label: str) -> str:
    import skylark as sk

    if isinstance(obj, sk.Graph):
        return "skylark"
    mods = type(obj).__mro__
    names = {f"{c.__module__}.{c.__qualname__}" for c in mods}
    if "torch.nn.modules.module.Module" in names:
        return "torch"
    if any(n.startswith("keras.") and n.endswith(".Model") for n in names) or \
            any(n.endswith("keras.src.models.model.Model") for n in names):
        return "keras"
    raise ValueError(f"{label} must give a torch nn.Module, a keras.Model or a skylark Graph. "
                     f"Received: {type(obj)!r}")


def _from_skylark(net, input_shape) -> Imported:
    from ..spec import describe

    return Imported(describe(net), {k: np.array(v) for k, v in net.state().items()},
                    tuple(input_shape) if input_shape else None, "skylark",
                    origin={n.name: n.name for n in net.nodes})


def _torch_forward(src: Source, x):
    """The module in evaluation mode and x's dtype, on a copy: the caller's module keeps its
    mode and the dtype of every parameter and buffer."""
    import copy

    import torch

    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    m = copy.deepcopy(src.obj).eval().to(dtype)
    with torch.no_grad():
        return m(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def _keras_forward(src: Source, x):
    import keras

    model = keras.saving.load_model(src.obj, compile=False) if isinstance(src.obj, str) \
        else src.obj
    from .keras_source import keras_logits

    # NCHW -> NHWC: Keras's channels_last input; a final softmax, which the import leaves out
    # (the graph ends in logits), left out here too
    y = keras_logits(model, np.ascontiguousarray(x.transpose(0, 2, 3, 1)).astype(
        model.compute_dtype))
    return np.asarray(keras.ops.convert_to_numpy(y))


class _Evaluator:
    """onnx's reference evaluator behind onnxruntime's session interface (the parts used)."""

    def __init__(self, path) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load(path)
        self.ev = ReferenceEvaluator(model)
        inits = {t.name for t in model.graph.initializer}
        v = next(v for v in model.graph.input if v.name not in inits)
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        kind = "tensor(double)" if t.elem_type == onnx.TensorProto.DOUBLE else "tensor(float)"
        self.input = type("Input", (), {"name": v.name, "type": kind, "shape": shape})

    def get_inputs(self):
        return [self.input]

    def run(self, names, feed):
        return self.ev.run(names, feed)


def _onnx_session(src: Source):
    """An onnxruntime session; onnx's reference evaluator where onnxruntime has no kernel for
    an op in the file's dtype (its CPU provider has no float64 Conv, pools, ...)."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(src.obj, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        if "NOT_IMPLEMENTED" not in str(e):
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"onnxruntime cannot run {src.label!r}: {why}") from None
        src.runtime = "onnx reference evaluator (onnxruntime has no kernel for it)"
        return _Evaluator(src.obj)


def _onnx_forward(src: Source, x):
    sess = _onnx_session(src)
    inp = sess.get_inputs()[0]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    shape = inp.shape
    # A converter from a channels-last framework (tf2onnx) writes an NHWC input.
    if len(shape) == 4 and shape[1] != x.shape[1] and shape[3] == x.shape[1]:
        x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    x = np.ascontiguousarray(x, dtype)
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else len(x)
    # a file exported for a fixed batch size runs in chunks of it (the last one zero-padded)
    outs = []
    for i in range(0, len(x), fixed):
        chunk = x[i:i + fixed]
        pad = np.zeros((fixed - len(chunk), *chunk.shape[1:]), dtype)
        outs.append(sess.run(None, {inp.name: np.concatenate([chunk, pad])})[0][:len(chunk)])
    return np.concatenate(outs)


def _skylark_forward(src: Source, x):
    net = src.obj
    was = net.training
    try:
        return np.asarray(net.eval().forward(x))
    finally:
        net.train(was)


_FORWARD = {"torch": _torch_forward, "keras": _keras_forward, "onnx": _onnx_forward,
            "skylark": _skylark_forward}


def extend_model_help(parser) -> None:
    """--model's help, for a command that also takes a model to import."""
    for a in parser._actions:
        if a.dest == "model":
            a.help += ("; or a model as its author wrote it: a .onnx or .keras file, or "
                       "module:function returning a torch nn.Module (give --input-shape) or "
                       "a keras.Model")


def resolve_model(model: str, input_shape, *, default_shape=(1, 28, 28), dtype="float32",
                  seed: int = 0, num_classes: int | None = 10):
    """`--model` for the reference commands: a built-in, a spec JSON or a skylark
    `module:function` (skylark.models.build_model), or a model to import (a .onnx or .keras
    file, `module:function` returning a torch or Keras model). `input_shape` None: the one the
    imported model records, else `default_shape`. Returns (Graph in `dtype`, input_shape,
    Imported or None); ValueError (one line) when it cannot be built or imported."""
    from skylark.models import build_model

    src = None
    if is_source(model) or (":" in model and not model.endswith(".json")
                            and not Path(model).exists()):
        src = open_source(model)
    if src is None or src.kind == "skylark":
        shape = tuple(input_shape or default_shape)
        return build_model(model, shape, num_classes=num_classes or 10, seed=seed,
                           dtype=dtype), shape, None
    imp = import_source(src, input_shape=input_shape)
    shape = tuple(input_shape or imp.input_shape or default_shape)
    return imp.graph(dtype), shape, imp
