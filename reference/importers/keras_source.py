"""Import a Keras 3 model as its author wrote it into a skylark graph spec and its weights.

    imp = import_keras("model.keras")            # or a keras.Model, or "pkg.mod:make_model"
    imp.spec, imp.state, imp.input_shape         # skylark's terms: NCHW, OIHW, (out, in)
    list_unsupported(model)                      # every layer skylark cannot express, at once

The functional graph (a Sequential is one too) is walked from the model's output back to its
input, each Keras layer becoming one node (a Conv2D/Dense with `activation=` two: the layer, then
f"{name}_act"), named after the layer (sanitized to [A-Za-z0-9_]). The per-class rules are in
reference.importers.keras_layers; every weight crosses through reference.transfer.from_keras
(HWIO -> OIHW, (in, out) -> (out, in), a Dense after a Flatten's rows HWC -> CHW).

A .keras file is read safely: before Keras loads it, its config.json is read (size-bounded) and
any Lambda layer (its code would run) or class Keras does not ship (an unregistered custom layer)
is refused, naming them; then keras.saving.load_model(path, compile=False, safe_mode=True).
"""

from __future__ import annotations

import importlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from . import Imported, ImportFileError, UnsupportedError
from .keras_layers import CONVERTERS

MAX_CONFIG_BYTES = 64 << 20  # a config.json larger than this is not a model's: refused unread


# --- loading ------------------------------------------------------------------------------------


def _custom_classes(config) -> list[str]:
    """Every Lambda layer and every class outside Keras in a .keras file's config.json."""
    found = []

    def walk(v):
        if isinstance(v, dict):
            cls, module = v.get("class_name"), v.get("module")
            name = (v.get("config") or {}).get("name") if isinstance(v.get("config"), dict) \
                else None
            if cls == "Lambda":
                found.append(f"Lambda layer {name!r} (loading it would run the code stored in "
                             f"the file; refused as Keras' safe_mode does)")
            elif isinstance(cls, str) and module is not None and not str(module).startswith(
                    "keras"):
                found.append(f"class {v.get('registered_name') or cls!r} from module "
                             f"{module!r} at {name!r} (not Keras': an unregistered custom "
                             f"layer)")
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(config)
    return found


def _inspect_file(path: Path) -> dict:
    """The .keras archive's metadata.json, after refusing what must not be loaded (one-line
    ImportFileError): not a zip, no config.json, an oversized config, Lambda or custom classes."""
    if not path.is_file():
        raise ImportFileError(f"no Keras model file at this path. Received: {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ImportFileError(f"{str(path)!r} is not a .keras archive (not a readable zip: "
                              f"another format, or truncated or corrupt)")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ImportFileError(f"{str(path)!r} is not a .keras archive (no config.json)."
                                      f" Received: {sorted(names)[:5]}")
            if z.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                raise ImportFileError(f"{str(path)!r}: config.json is "
                                      f"{z.getinfo('config.json').file_size} bytes (over "
                                      f"{MAX_CONFIG_BYTES}): refused")
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
    except ImportFileError:
        raise
    except Exception as e:  # a damaged member (bad CRC, truncated data), or JSON that is not
        raise ImportFileError(f"{str(path)!r} is a damaged .keras archive: "
                              f"{type(e).__name__}: {_line(e)}") from None
    bad = _custom_classes(config)
    if bad:
        more = f" (and {len(bad) - 1} more: {'; '.join(bad[1:])})" if len(bad) > 1 else ""
        raise ImportFileError(f"{str(path)!r} cannot be loaded safely. Received: {bad[0]}{more}")
    return meta if isinstance(meta, dict) else {}


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def load_keras(obj) -> tuple[object, str, list[str]]:
    """(keras.Model, what it came from, notes) for a model, a .keras path or "pkg.mod:fn"."""
    import keras

    if isinstance(obj, keras.Model):
        return obj, f"keras model {obj.name!r}", []
    text = str(obj)
    if isinstance(obj, str) and ":" in text and not Path(text).exists():
        mod, _, fn = text.partition(":")
        try:
            model = getattr(importlib.import_module(mod), fn)()
        except Exception as e:
            raise ImportFileError(f"cannot build a model from {text!r}: {type(e).__name__}: "
                                  f"{_line(e)}") from None
        if not isinstance(model, keras.Model):
            raise ImportFileError(f"{text!r} must return a keras.Model. Received: "
                                  f"{type(model).__name__}")
        return model, text, []
    path = Path(text)
    meta = _inspect_file(path)
    notes = []
    saved = str(meta.get("keras_version", "unknown"))
    if saved.split(".")[0] != keras.__version__.split(".")[0] and saved != "unknown":
        # another major version: its file format and layer semantics are not this Keras's
        # (Keras does not check, and would read it with this version's meaning)
        raise ImportFileError(f"{str(path)!r} was saved by Keras {saved}, a major version "
                              f"this Keras {keras.__version__} does not read faithfully: "
                              f"re-save it with Keras {keras.__version__.split('.')[0]}.x. "
                              f"Received: keras_version={saved}")
    if saved != keras.__version__:
        notes.append(f"{path.name} was saved by Keras {saved}; read by Keras {keras.__version__}"
                     f" (the import checks the layers it reads, not the version)")
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # Keras names the class, the layer or the archive entry
        raise ImportFileError(f"Keras cannot load {str(path)!r}: {type(e).__name__}: "
                              f"{_line(e)}") from None
    if not isinstance(model, keras.Model):
        raise ImportFileError(f"{str(path)!r} holds no keras.Model. Received: "
                              f"{type(model).__name__}")
    return model, str(path), notes


# --- the walk -----------------------------------------------------------------------------------


def _key(t) -> tuple:
    op, node_index, tensor_index = t._keras_history
    return id(op), node_index, tensor_index


def keras_nodes(model) -> list:
    """[(layer, node)] every Keras node the model's output depends on, inputs before readers."""
    order, seen = [], set()
    for out in model.outputs:
        stack = [(out, False)]
        while stack:
            t, expanded = stack.pop()
            op, ni, _ = t._keras_history
            if (id(op), ni) in seen:
                continue
            node = op._inbound_nodes[ni]
            if expanded:
                seen.add((id(op), ni))
                order.append((op, node))
                continue
            stack.append((t, True))
            stack += [(x, False) for x in reversed(node.input_tensors)]
    return order


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"


class Walk:
    """What the converters write into (reference.importers.keras_layers)."""

    def __init__(self, model, consumers: dict) -> None:
        self.spec: list[dict] = []
        self.kparams: dict[str, np.ndarray] = {}
        self.origin: dict[str, str] = {}
        self.notes: list[str] = []
        self.unsupported: list[str] = []
        self.final = {id(t._keras_history[0]) for t in model.outputs}
        self._consumers, self.tensor_of = consumers, {}  # node name -> its Keras tensor key
        self.batchnorm_seen = self.dropped_softmax = False

    def add(self, entry: dict, layer, inputs: list[str], name: str | None = None) -> str:
        name = base = _sanitize(name or layer.name)
        taken = {s["name"] for s in self.spec} | {"input"}
        k = 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        self.spec.append({**entry, "name": name, "inputs": list(inputs)})
        self.origin[name] = layer.name
        return name

    def weights(self, node: str, layer, **arrays) -> None:
        for k, v in arrays.items():
            if v is not None:
                self.kparams[f"{node}.{k}"] = self.array(v)

    @staticmethod
    def array(v) -> np.ndarray:
        from keras import ops

        return np.asarray(v if isinstance(v, np.ndarray) else ops.convert_to_numpy(v))

    def is_final(self, layer) -> bool:
        return id(layer) in self.final

    def node(self, name: str) -> dict | None:
        return next((s for s in self.spec if s["name"] == name), None)

    def consumers(self, name: str) -> int:
        """How many Keras nodes read the tensor node `name` holds."""
        return self._consumers.get(self.tensor_of.get(name), 0)


def _walk(model) -> Walk:
    import keras

    nodes = keras_nodes(model)
    consumers: dict = {}
    for _, node in nodes:
        for t in node.input_tensors:
            consumers[_key(t)] = consumers.get(_key(t), 0) + 1
    w = Walk(model, consumers)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        w.unsupported.append(f"inputs={len(model.inputs)}, outputs={len(model.outputs)} "
                             f"(skylark graphs have one input and one output)")
    tensors: dict = {}  # Keras tensor key -> skylark node name ("input": the model's input)
    uses: dict = {}
    for layer, node in nodes:
        cls = type(layer).__name__
        outs = node.output_tensors
        if isinstance(layer, keras.layers.InputLayer):
            for t in outs:
                tensors[_key(t)] = "input"
            continue
        uses[id(layer)] = uses.get(id(layer), 0) + 1
        if uses[id(layer)] == 2:
            w.unsupported.append(f"layer {cls} {layer.name!r} called twice (shared weights)")
        ins = [tensors.get(_key(t), "input") for t in node.input_tensors]
        in_shapes = [tuple(t.shape[1:]) for t in node.input_tensors]
        convert = None if isinstance(layer, keras.Model) else CONVERTERS.get(cls)
        if convert is None:
            what = "a nested model" if isinstance(layer, keras.Model) else "no skylark kind"
            w.unsupported.append(f"layer={cls} at {layer.name!r} ({what})")
            out = ins[0] if ins else "input"
        elif len(outs) != 1:
            w.unsupported.append(f"layer={cls} at {layer.name!r} ({len(outs)} outputs)")
            out = ins[0]
        else:
            out = convert(w, layer, layer.get_config(), ins, in_shapes, tuple(outs[0].shape[1:]))
        for t in outs:
            tensors[_key(t)] = out
            w.tensor_of.setdefault(out, _key(t))
    if model.outputs:
        last = tensors.get(_key(model.outputs[0]))
        if last == "input":
            w.unsupported.append("the model's output is its input (no layer to import)")
        elif w.spec and last != w.spec[-1]["name"]:
            # the output node must be the spec's last entry: an identity that reads it
            w.add({"kind": "identity"}, model.outputs[0]._keras_history[0], [last],
                  f"{last}_out")
    return w


def _input_shape(model, w: Walk):
    shape = tuple(model.inputs[0].shape) if model.inputs else ()
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        w.unsupported.append(f"input_shape={shape!r} at {model.inputs[0].name!r} (skylark "
                             f"needs a fixed (H, W, C) image input)" if model.inputs else
                             "a model without an input (build it with keras.Input)")
        return None
    h, wd, c = (int(d) for d in shape[1:])
    return c, h, wd


def keras_logits(model, x_nhwc):
    """The model's output without a final softmax, which the import leaves out: what the
    imported graph computes, for proving an import against Keras itself."""
    import keras

    from .keras_layers import _act_name

    last = model.outputs[0]._keras_history[0]
    cfg = last.get_config()
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and _act_name(cfg["activation"]) ==
            "softmax"):
        return keras.Model(model.inputs, last.input)(x_nhwc, training=False)
    if _act_name(cfg.get("activation")) != "softmax":
        return model(x_nhwc, training=False)
    stock = last.activation
    last.activation = keras.activations.linear  # the layer's own pre-activation output
    try:
        return model(x_nhwc, training=False)
    finally:
        last.activation = stock


def list_unsupported(obj) -> list[str]:
    """Every layer, attribute or pattern of `obj` skylark cannot express ([] when none)."""
    model, _, _ = load_keras(obj)
    w = _walk(model)
    _input_shape(model, w)
    return w.unsupported


def import_keras(obj) -> Imported:
    """A Keras model (keras.Model, .keras path or "pkg.mod:fn") as an `Imported`: the graph,
    its weights in skylark's layout, (C, H, W), node -> Keras layer name, and notes.
    UnsupportedError lists everything skylark cannot express; ImportFileError: a file that
    cannot be read (safely)."""
    from ..transfer import from_keras

    model, where, notes = load_keras(obj)
    w = _walk(model)
    input_shape = _input_shape(model, w)
    if w.unsupported:
        raise UnsupportedError(w.unsupported, where)
    state = from_keras(w.kparams, w.spec, input_shape)  # every layout rule is transfer's
    if w.batchnorm_seen:
        notes.append("BatchNormalization: Keras moves the moving variance with the BIASED batch"
                     " variance, skylark (torch) with the unbiased one (n/(n-1) times it, "
                     "n = N*H*W): training the import updates running_var slightly differently;"
                     " inference is the same")
    return Imported(w.spec, state, input_shape, "keras", w.origin, notes + w.notes)


__all__ = ["MAX_CONFIG_BYTES", "import_keras", "keras_logits", "keras_nodes", "list_unsupported",
           "load_keras"]
