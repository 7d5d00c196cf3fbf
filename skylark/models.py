"""Built-in models, and any model as a config: a list of {"kind": ..., constructor arguments}.

    model = build_model("vgg-bn", (1, 28, 28), num_classes=10, seed=0, dtype="float64")
    model = build_model("my_net.json", ...)         # {"layers": [{"kind": "conv2d", ...}, ...]}
    model = build_model("my_pkg.nets:small_cnn", ...)   # a function returning a Graph
    config = to_config(model)                        # JSON-able; from_config(config) rebuilds it

Built-ins: "skylark" (the Skylark net), "lenet5" (LeNet-5 as usually written for 28x28: conv
5x5 with padding 2, tanh, average pooling, dense 120-84-10), "vgg-bn" (two conv-BatchNorm-ReLU
blocks, the second a stride-2 "same" conv, dropout, global average pooling, dense).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from . import layers as L
from .checkpoint import read_checkpoint
from .graph import INPUT, Graph
from .layers.base import as_dtype
from .model import Sequential, skylark_cnn
from .zoo import ZOO

LAYERS = {cls.kind: cls for cls in (getattr(L, name) for name in L.__all__)
          if isinstance(cls, type) and issubclass(cls, L.Layer) and cls.kind}


def to_config(model: Graph) -> list[dict]:
    """The architecture of `model` as JSON-able dicts: {"kind": ..., **layer.config()}, plus
    "name" and "inputs" where they differ from a Sequential's ("i"; the node before)."""
    out = []
    for i, node in enumerate(model.nodes):
        entry = {"kind": node.layer.kind, **node.layer.config()}
        if node.name != str(i):
            entry["name"] = node.name
        if list(node.inputs) != [model.nodes[i - 1].name if i else INPUT]:
            entry["inputs"] = list(node.inputs)
        out.append(entry)
    return out


def from_config(config, *, dtype="float32", seed: int = 0) -> Graph:
    """A freshly initialised model (layer i seeded with seed + i) from `to_config` output: a
    Sequential when no entry names its inputs or itself, else a Graph. ValueError naming the
    layer for an unknown kind or a bad argument, and the node for a bad graph (an unknown
    input, a cycle, a dangling node, a wrong number of inputs)."""
    if not isinstance(config, list) or not config:
        raise ValueError(f"a model config is a non-empty list of layers. Received: {config!r}")
    layers = []
    for i, entry in enumerate(config):
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in LAYERS:
            raise ValueError(f"layer {i}: kind must be one of {sorted(LAYERS)}. "
                             f"Received: {entry!r}")
        cls = LAYERS[kind]
        args = {k: v for k, v in entry.items() if k not in ("kind", "name", "inputs")}
        extra = {"dtype": dtype, "seed": seed + i} if cls.param_names else {}
        try:
            layers.append(cls(**args, **extra))
        except TypeError as e:  # a missing or unknown argument
            raise ValueError(f"layer {i} ({kind}): {e}. Received: {entry!r}") from None
        except ValueError as e:  # a bad value: the layer's own message names it
            raise ValueError(f"layer {i} ({kind}): {e}") from None
    if not any("name" in e or "inputs" in e for e in config):
        return Sequential(*layers)
    names = [e.get("name", str(i)) for i, e in enumerate(config)]
    check_order(config, names)
    net = Graph()
    for entry, name, layer in zip(config, names, layers, strict=True):
        net.add(name, layer, entry.get("inputs"))
    return net.check()


def check_order(config: list[dict], names: list[str]) -> None:
    """The graph fields of a config, before any node is built: names that are strings and
    unique, inputs that are a name or a list of names, then a cycle anywhere (named, node by
    node), then a node listed before a node it reads; each a ValueError naming the node."""
    seen = set()
    for i, (entry, name) in enumerate(zip(config, names, strict=True)):
        if not isinstance(name, str) or name == INPUT:
            raise ValueError(f"layer {i}: a node name is a string, not {INPUT!r}. "
                             f"Received: name={name!r}")
        if name in seen:
            raise ValueError(f"node names must be unique. Received: a second node {name!r}")
        seen.add(name)
        refs = entry.get("inputs")
        if refs is not None and not isinstance(refs, str) and not (
                isinstance(refs, list) and all(isinstance(r, str) for r in refs)):
            raise ValueError(f"node {name!r}: inputs is a node name or a list of them. "
                             f"Received: inputs={refs!r}")
    where = {n: i for i, n in enumerate(names)}
    later = [(i, ref) for i, entry in enumerate(config) for ref in _reads(entry)
             if where.get(ref, -1) >= i]
    for i, ref in later:  # a cycle first: fixing the order alone could not mend it
        path = _path(config, names, where, where[ref], i)
        if path:
            loop = " -> ".join(names[k] for k in [i, *path])
            raise ValueError(f"the graph has a cycle: {loop}. Received: node {names[i]!r} "
                             f"with inputs={config[i].get('inputs')!r}")
    for i, ref in later:
        raise ValueError(f"node {names[i]!r} reads {ref!r}, which is listed after it: list "
                         f"the nodes in the order they run. "
                         f"Received: inputs={config[i].get('inputs')!r}")


def _reads(entry: dict) -> list[str]:
    refs = entry.get("inputs") or []
    return [refs] if isinstance(refs, str) else list(refs)


def _path(config, names, where, start: int, goal: int) -> list[int] | None:
    """Node indices from `start` back to `goal` along inputs (the reads), or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        k, path = stack.pop()
        if k == goal:
            return path
        if k in seen:
            continue
        seen.add(k)
        refs = [names[k - 1]] if config[k].get("inputs") is None and k else _reads(config[k])
        stack += [(where[r], [*path, where[r]]) for r in refs if r in where]
    return None


def lenet5(input_shape=(1, 28, 28), *, num_classes: int = 10, seed: int = 0,
           dtype="float32") -> Sequential:
    """LeNet-5 for 28x28 inputs: conv 5x5 (6, padding 2), tanh, avg-pool 2, conv 5x5 (16),
    tanh, avg-pool 2, flatten, dense 120, tanh, dense 84, tanh, dense num_classes."""
    c, h, w = _chw(input_shape)
    if h < 12 or w < 12:  # the second conv needs a 5x5 map after the first pool
        raise ValueError("lenet5 needs inputs of at least 12x12 (it is written for 28x28). "
                         f"Received: input_shape={tuple(input_shape)}")
    feat = 16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2)
    return from_config([
        {"kind": "conv2d", "in_channels": c, "out_channels": 6, "kernel_size": 5, "padding": 2},
        {"kind": "tanh"}, {"kind": "avgpool2d", "kernel_size": 2},
        {"kind": "conv2d", "in_channels": 6, "out_channels": 16, "kernel_size": 5},
        {"kind": "tanh"}, {"kind": "avgpool2d", "kernel_size": 2}, {"kind": "flatten"},
        {"kind": "dense", "in_features": feat, "out_features": 120}, {"kind": "tanh"},
        {"kind": "dense", "in_features": 120, "out_features": 84}, {"kind": "tanh"},
        {"kind": "dense", "in_features": 84, "out_features": num_classes},
    ], dtype=dtype, seed=seed)


def vgg_bn(input_shape=(1, 28, 28), *, num_classes: int = 10, seed: int = 0,
           dtype="float32") -> Sequential:
    """conv 3x3 "same" (8), BatchNorm, ReLU; conv 3x3 stride 2 "same" (16), BatchNorm, ReLU;
    dropout 0.25; global average pooling; dense num_classes. Any input size."""
    c = _chw(input_shape)[0]
    return from_config([
        {"kind": "conv2d", "in_channels": c, "out_channels": 8, "kernel_size": 3,
         "padding": "same"},
        {"kind": "batchnorm2d", "num_features": 8}, {"kind": "relu"},
        {"kind": "conv2d", "in_channels": 8, "out_channels": 16, "kernel_size": 3, "stride": 2,
         "padding": "same"},
        {"kind": "batchnorm2d", "num_features": 16}, {"kind": "relu"},
        {"kind": "dropout", "p": 0.25}, {"kind": "globalavgpool2d"},
        {"kind": "dense", "in_features": 16, "out_features": num_classes},
    ], dtype=dtype, seed=seed)


MODELS = {"skylark": skylark_cnn, "lenet5": lenet5, "vgg-bn": vgg_bn, **ZOO}


def build_model(model: str, input_shape, *, num_classes: int = 10, seed: int = 0,
                dtype="float32") -> Graph:
    """A built-in name (MODELS), a .json file ({"layers": [...]} or the list itself), or
    "module:function" (called with no arguments, returning a Graph or Sequential), in `dtype`.

    ValueError naming what was received when it cannot be built or does not fit
    `input_shape` and `num_classes`."""
    dt = as_dtype(dtype)
    if model in MODELS:
        net = MODELS[model](tuple(input_shape), num_classes=num_classes, seed=seed, dtype=dt)
    elif model.endswith(".json"):
        net = from_config(_read_json(model), dtype=dt, seed=seed)
    elif model.endswith(".npz"):  # before module:function: a path may hold a ':'
        net = _from_checkpoint(model, dt)
    elif ":" in model:
        net = _from_function(model, dt)
    elif model.lower().endswith((".onnx", ".keras")):
        raise ValueError(f"{model} is a model to import: `skylark import {model} --out "
                         f"model.npz` writes a checkpoint that `--model model.npz` starts "
                         f"from (`skylark check` and `compare` take the file itself). "
                         f"Received: --model {model!r}")
    else:
        raise ValueError(f"--model is one of {sorted(MODELS)}, a .json file or "
                         f"module:function. Received: {model!r}")
    _check_fits(net, model, tuple(input_shape), num_classes, dt)
    return net


def _read_json(path: str) -> list:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"cannot read the model file {path!r}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"the model file {path!r} is not valid JSON: {e}") from None
    if isinstance(data, dict):
        if "layers" not in data:
            raise ValueError(f'the model file {path!r} needs a "layers" list. '
                             f"Received: keys {sorted(data)}")
        return data["layers"]
    return data


def _from_checkpoint(path: str, dtype) -> Graph:
    """The architecture a checkpoint records (`skylark import` and `train --save` write it),
    holding the checkpoint's weights: a model to start from."""
    arrays, meta, _ = read_checkpoint(path)
    if "model" not in meta:
        raise ValueError(f"checkpoint {path!r} records no architecture (an older checkpoint: "
                         f"pass the --model it was trained with and --resume it)")
    net = from_config(meta["model"], dtype=dtype)
    try:
        net.load_state({k: np.asarray(v, dtype) for k, v in arrays.items()})
    except ValueError as e:
        raise ValueError(f"checkpoint {path!r} does not fit its own architecture: {e}") from None
    return net


def _from_function(text: str, dtype) -> Graph:
    module, _, name = text.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import the model function {text!r}: {e}") from None
    net = fn()
    if not isinstance(net, Graph):
        raise ValueError(f"{text} must return a skylark Graph or Sequential. "
                         f"Received: {type(net)!r}")
    # the same architecture and weights in the requested dtype
    out = from_config(to_config(net), dtype=dtype)
    out.load_state({k: np.asarray(v, dtype) for k, v in net.state().items()})
    return out


def _check_fits(net: Graph, model: str, input_shape, num_classes: int, dtype) -> None:
    """One evaluation-mode forward of a zero image: every shape, channel and size checked."""
    try:
        out = net.eval().forward(np.zeros((1, *input_shape), dtype))
    except (ValueError, TypeError, IndexError) as e:
        raise ValueError(f"model {model!r} does not fit inputs of shape {input_shape}: {e}") \
            from None
    finally:
        net.train()
    if out.shape[1:] != (num_classes,):
        raise ValueError(f"model {model!r} must end in {num_classes} logits for this data. "
                         f"Received: output shape {out.shape[1:]}")


def _chw(input_shape) -> tuple[int, int, int]:
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape is (C, H, W). Received: input_shape={input_shape!r}")
    return tuple(int(d) for d in input_shape)
