"""Graph: a model as a DAG of named layers; backward walks it in reverse and ADDS gradients.

    net = Graph()
    net.add("conv1", Conv2D(16, 16, 3, padding=1, bias=False))   # input: the model's input
    net.add("bn1", BatchNorm2d(16))                               # input: the node before
    net.add("relu1", ReLU())
    net.add("add", Add(), ["relu1", "input"])                     # a residual: two inputs

Each node is (name, layer, inputs). `inputs` names earlier nodes or "input" (the model's
input); left out, it is the node added just before (the first node reads "input"). The last
node added is the output. Names are the torch module path of the layer, so parameters are named
`conv1.weight`, `layer1.0.bn1.running_mean`, ... as in a torch state_dict. `Sequential` is this
class with nodes "0", "1", ... each reading the one before.

Backward is reverse-mode over the nodes in reverse order. A tensor read by several nodes (a fan
out: the input of a residual block, a channel split) receives one gradient from each reader;
they are ADDED, never overwritten (d/dx f(x, x) = f_1 + f_2). This relies on the layer
contract (skylark.layers.base.Layer): a backward never writes into the dy it is given, since
Add hands the same array to every input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .checkpoint import _EXTRA, _META_KEY, CheckpointError, _load, read_checkpoint
from .files import atomic_write
from .flat_grads import FlatGrads
from .layers.base import Layer

INPUT = "input"
# torch's module-path names: dot-separated segments of letters, digits and underscores
_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\Z")


class Node(NamedTuple):
    """One layer of a Graph and the tensors it reads (node names, or "input")."""

    name: str
    layer: Layer
    inputs: tuple[str, ...]


class _Plan(NamedTuple):
    """What running the graph needs, worked out once per topology."""

    frees: list  # frees[i]: the tensors no node after node i reads (dropped in forward)
    reads_input_only: list  # [bool]: node i reads the model's input and nothing else


class Graph:
    """A DAG of layers (module docstring). `forward(x)` -> the last node's output;
    `backward(dy)` -> d loss / d input, parameter gradients added into each layer's `grads`."""

    def __init__(self, nodes=()) -> None:
        self.nodes: list[Node] = []
        self._by_name: dict[str, int] = {}
        self._plan_cache: _Plan | None = None
        self._flat: FlatGrads | None = None
        for node in nodes:
            self.add(*node)

    # --- building --------------------------------------------------------------------------

    def add(self, name: str, layer: Layer, inputs=None) -> str:
        """Add node `name` computing `layer` of `inputs` (a node name, "input", or a list of
        them for a layer that takes several, e.g. Add); returns `name`. ValueError naming the
        node for a bad name, a name used twice, an input that is no earlier node, a layer
        object already in the graph, or the wrong number of inputs for the layer."""
        if not isinstance(name, str) or not _NAME.match(name) or name == INPUT:
            raise ValueError("a node name is dot-separated letters, digits and underscores, "
                             f"not {INPUT!r}. Received: name={name!r}")
        if name in self._by_name:
            raise ValueError(f"node names must be unique. Received: a second node {name!r}")
        if not isinstance(layer, Layer):
            raise ValueError(f"node {name!r} must hold a skylark layer. Received: {layer!r}")
        for other in self.nodes:
            if other.layer is layer:
                raise ValueError(f"node {name!r}: this layer object is already node "
                                 f"{other.name!r}; a layer keeps one forward's cache, so each "
                                 f"node needs its own. Received: {layer!r}")
        refs = self._inputs(name, inputs)
        arity = layer.n_inputs
        if (arity is None and len(refs) < 2) or (arity is not None and len(refs) != arity):
            want = "two or more inputs" if arity is None else \
                f"{arity} input{'s' if arity > 1 else ''}"
            raise ValueError(f"node {name!r}: {type(layer).__name__} takes {want}. "
                             f"Received: inputs={list(refs)}")
        self._by_name[name] = len(self.nodes)
        self.nodes.append(Node(name, layer, refs))
        self._plan_cache = None
        return name

    def _inputs(self, name: str, inputs) -> tuple[str, ...]:
        if inputs is None:
            return (self.nodes[-1].name if self.nodes else INPUT,)
        if not isinstance(inputs, (str, list, tuple)):
            raise ValueError(f"node {name!r}: inputs is a node name or a list of them. "
                             f"Received: inputs={inputs!r}")
        refs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        for ref in refs:
            if not isinstance(ref, str) or (ref != INPUT and ref not in self._by_name):
                raise ValueError(f"node {name!r}: input {ref!r} is not {INPUT!r} or a node "
                                 f"added before it. Received: inputs={inputs!r}")
        if not refs:
            raise ValueError(f"node {name!r} needs at least one input. Received: inputs=[]")
        return refs

    def _plan(self) -> _Plan:
        """The run plan, after checking that every node but the output feeds another."""
        if self._plan_cache is not None:
            return self._plan_cache
        last_read = {INPUT: -1}
        for i, node in enumerate(self.nodes):
            for ref in node.inputs:
                last_read[ref] = i
        out = self.nodes[-1].name if self.nodes else INPUT
        dangling = [n.name for n in self.nodes if n.name not in last_read and n.name != out]
        if dangling:
            raise ValueError(f"node {dangling[0]!r} is dangling: no node reads its output and "
                             f"it is not the model's output (the last node, {out!r}). "
                             f"Received: unread nodes {dangling}")
        frees = [[] for _ in self.nodes]
        for ref, i in last_read.items():
            if i >= 0 and ref != out:
                frees[i].append(ref)
        reads_input_only = [all(r == INPUT for r in n.inputs) for n in self.nodes]
        self._plan_cache = _Plan(frees, reads_input_only)
        return self._plan_cache

    def check(self) -> Graph:
        """Validate the topology now (forward does it too); returns self."""
        self._plan()
        return self

    # --- running ---------------------------------------------------------------------------

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.nodes:
            return x
        return self._forward(x, keep=False)[self.nodes[-1].name]

    __call__ = forward

    def forward_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every node's output by node name (and "input"), for inspection and the checks."""
        return self._forward(x, keep=True)

    def _forward(self, x, keep: bool) -> dict[str, np.ndarray]:
        plan = self._plan()
        values = {INPUT: x}
        for i, node in enumerate(self.nodes):
            layer = node.layer
            args = values[node.inputs[0]] if layer.n_inputs == 1 else \
                [values[r] for r in node.inputs]
            try:
                values[node.name] = layer.forward(args)
            except ValueError as e:
                if len(self.nodes) == 1 or str(e).startswith("node "):
                    raise
                raise ValueError(f"node {node.name!r} ({layer.kind}): {e}") from None
            if not keep:
                for ref in plan.frees[i]:  # memory: what no later node reads is let go
                    del values[ref]
        return values

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate d loss / d output through every node; returns d loss / d input.

        `input_grad=False` (training: the data needs no gradient) returns None, and the nodes
        that read only the input skip their input gradient (torch does the same for an input
        without requires_grad)."""
        return self._backward(dy, input_grad, None)

    def backward_all(self, dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(d loss / d input, {node name: d loss / d that node's output}): every gradient."""
        seen: dict[str, np.ndarray] = {}
        return self._backward(dy, True, seen), seen

    def _backward(self, dy, input_grad: bool, seen: dict | None):
        if not self.nodes:
            return dy if input_grad else None
        plan = self._plan()
        grads = {self.nodes[-1].name: dy}
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            g = grads.pop(node.name)
            if seen is not None:  # a copy: a layer's backward may reuse dy's memory
                seen[node.name] = np.array(g)
            layer = node.layer
            if plan.reads_input_only[i] and not input_grad:
                if layer.param_names:  # it still owes its parameter gradients
                    layer.backward(g, input_grad=False)
                continue
            d = layer.backward(g)
            for ref, d_ref in zip(node.inputs, (d,) if layer.n_inputs == 1 else d,
                                  strict=True):
                if ref == INPUT and not input_grad:
                    continue
                prev = grads.get(ref)
                # a fan-out: the readers' gradients ADD up. Out of place: a routing layer
                # (Add, Identity) hands back dy itself, which another node may still hold.
                grads[ref] = d_ref if prev is None else prev + d_ref
        return grads.get(INPUT) if input_grad else None

    # --- mode, parameters, gradients ---------------------------------------------------------

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers in node order; a tuple (add a node with `add`, not by appending here)."""
        return tuple(node.layer for node in self.nodes)

    def named_layers(self) -> list[tuple[str, Layer]]:
        return [(node.name, node.layer) for node in self.nodes]

    def __getstate__(self) -> dict:
        # A copy or pickle must not carry the flat buffer: its views would come back as
        # separate arrays that still pass the identity checks. zero_grad rebuilds it.
        return {**self.__dict__, "_flat": None}

    def __repr__(self) -> str:
        def reads(i, node):  # shown only where it is not the node before
            default = (self.nodes[i - 1].name if i else INPUT,)
            return "" if node.inputs == default else f" <- {', '.join(node.inputs)}"

        body = "".join(f"\n  ({n.name}): {n.layer!r}{reads(i, n)}"
                       for i, n in enumerate(self.nodes))
        return f"{type(self).__name__}({body}\n)"

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, key) -> Layer:
        """The layer of node `key`: its position (an int) or its name; a slice gives a list
        of layers (a Graph is not sliced into a smaller Graph)."""
        if isinstance(key, slice):
            return [node.layer for node in self.nodes[key]]
        if isinstance(key, str):
            if key not in self._by_name:
                raise KeyError(f"no node named {key!r}. Nodes: {list(self._by_name)}")
            return self.nodes[self._by_name[key]].layer
        return self.nodes[key].layer

    def node_index(self, name: str) -> int:
        return self._by_name[name]

    def zero_grad(self) -> None:
        """Clear every parameter's gradient. When the parameters share one dtype, their
        gradients live in ONE flat buffer, cleared by one fill (each layer's `grads[name]` a
        view of it), which `SGD` updates in one pass (see `flat_grads`). As torch's
        `zero_grad(set_to_none=False)`, this zeroes the arrays in place: copy what `grads()`
        returned to keep it."""
        flat = self._flat_grad_plan()
        if flat is None:
            for layer in self.layers:
                layer.zero_grad()
            return
        flat.buffer.fill(0)
        for layer, views in flat.layers:
            layer.grads = dict(views)  # a fresh dict: one a caller edited is not reused

    def flat_grads(self) -> tuple[np.ndarray, list[tuple[str, np.ndarray, slice]]] | None:
        """(buffer, [(name, parameter, span)]): the flat gradient buffer and where each
        parameter's gradient lies in it, if every layer still holds the views `zero_grad`
        gave it (and the same parameter arrays); else None, and the caller must go parameter
        by parameter. buffer[span].reshape(parameter.shape) is the gradient of `parameter`."""
        flat = self._flat
        if flat is None or not flat.current(self.layers) or not flat.intact():
            return None
        return flat.buffer, flat.entries

    def _flat_grad_plan(self) -> FlatGrads | None:
        """The flat gradient buffer for the current layers and parameters (made anew when they
        changed), or None when the parameters' dtypes differ or there are none."""
        if self._flat is None or not self._flat.current(self.layers):
            self._flat = FlatGrads.build(self.named_layers())
        return self._flat

    def train(self, mode: bool = True) -> Graph:
        """Training mode (torch's name): BatchNorm2d uses batch statistics, Dropout drops."""
        for layer in self.layers:
            layer.training = bool(mode)
        return self

    def eval(self) -> Graph:
        """Evaluation mode: running statistics, no dropout."""
        return self.train(False)

    @property
    def training(self) -> bool:
        return all(layer.training for layer in self.layers)

    def params(self) -> dict[str, np.ndarray]:
        """Ordered name -> live parameter array, with torch state_dict names."""
        return {f"{n.name}.{k}": p for n in self.nodes for k, p in n.layer.params().items()}

    def buffers(self) -> dict[str, np.ndarray]:
        """Ordered name -> live non-trainable state (BatchNorm running statistics)."""
        return {f"{n.name}.{k}": b for n in self.nodes for k, b in n.layer.buffers().items()}

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers, node by node (torch's state_dict, without torch's
        num_batches_tracked): what a checkpoint holds and what the references load."""
        return {f"{n.name}.{k}": a for n in self.nodes
                for k, a in {**n.layer.params(), **n.layer.buffers()}.items()}

    def grads(self) -> dict[str, np.ndarray]:
        """Ordered name -> accumulated gradient, the same keys as `params()`."""
        return {f"{n.name}.{k}": n.layer.grads[k] for n in self.nodes for k in n.layer.params()}

    def load_params(self, mapping) -> None:
        """Copy `mapping` (name -> array) into the parameters, in place and in their dtype.

        Rejects missing, unexpected and mis-shaped entries, naming each; nothing is copied
        unless everything fits.
        """
        _load(self.params(), mapping)

    def load_state(self, mapping) -> None:
        """`load_params` for parameters and buffers together (the keys of `state()`)."""
        _load(self.state(), mapping)

    # --- checkpoints ---------------------------------------------------------------------------

    def save(self, path, metadata: dict | None = None,
             extra: dict[str, np.ndarray] | None = None) -> Path:
        """Write the parameters, JSON-able `metadata` and `extra` arrays (optimizer state) to
        `path` as `.npz`, atomically (skylark.files): a temporary file in the same folder is
        renamed over `path` only once fully written, so a crash never leaves a half-written
        checkpoint in place of a good one, and a full disk keeps the previous one."""
        import json

        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"checkpoints are .npz files. Received: path={str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(self.state())
        arrays[_META_KEY] = np.array(json.dumps(metadata or {}))
        arrays.update({_EXTRA + k: np.asarray(v) for k, v in (extra or {}).items()})
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path

    def load(self, path) -> dict:
        """Load parameters saved by `save` into this model; returns the saved metadata, with
        the `extra` arrays under `"extra"` when there are any."""
        arrays, out, extra = read_checkpoint(path)
        try:
            self.load_state(arrays)
        except ValueError as e:
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit this model: {e}") from e
        if extra:
            out["extra"] = extra
        return out
