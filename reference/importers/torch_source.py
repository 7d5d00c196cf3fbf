"""Import a torch `nn.Module`, as its author wrote it, into a skylark graph spec and its weights.

    imp = import_torch(torchvision.models.resnet18(), input_shape=(3, 64, 64))
    imp = import_torch("pkg.mod:make_net", input_shape=(1, 28, 28), state_dict="net.pt")
    list_unsupported(net, (3, 64, 64))        # ["module=Upsample at node 'up'", ...]

Why torch.fx (`symbolic_trace` with a Tracer that keeps the modules skylark maps 1:1 as leaves)
and not torch.export: fx records each leaf module by its path ("layer1.0.conv1"), which is
the prefix of its parameters in the module's state_dict, so every imported node is named as
the author's module names it and `{node}.weight` is the author's own key: the port verifier,
`skylark export --to torch` and the user all speak the same names, and a state_dict file loads
without a renaming table. torch.export lowers to aten ops (a conv is `aten.conv2d` over lifted
`p_layer1_0_conv1_weight` placeholders, a BatchNorm a `_native_batch_norm_legit_no_training`,
SiLU and Hardswish sometimes decomposed), so a module would have to be re-assembled from
pieces and its name recovered from metadata. fx's limit is Python control flow on tensor
values, which it cannot trace; torchvision's classifiers are written to be fx-traceable (its
feature extractor relies on it), and a model that is not fails with torch's own message.

How a traced graph becomes a spec:

- a leaf module -> its kind (`_MODULES`), named by its path; a stateless module called twice
  (resnet's `self.relu`) gets `path_1`, `path_2`, ... for the later calls;
- a function or method -> its kind (`_FUNCTIONS`, `_METHODS`), named
  "{enclosing module path}.{op}" ("layer1.0.add"); `contiguous`, a one-tensor `torch.cat`, a
  view that keeps the shape and `x.size()` arithmetic make no node;
- patterns: `x.view(N, -1)` / `x.reshape(N, -1)` of a map -> flatten; ShuffleNet's
  view(N, g, C/g, H, W) -> transpose(1, 2) -> [contiguous] -> view(N, C, H, W) ->
  channelshuffle(groups=g); `x.chunk(n, 1)` / `torch.split(x, s, 1)` / `x[:, a:b]` ->
  channelslice; `x.mean([2, 3])` -> globalavgpool2d (keepdim: adaptiveavgpool2d 1x1);
  `scale * x` (a squeeze-excite gate) -> multiply with the gate second, as skylark's takes it.

Shapes come from running the traced graph once on fake tensors (torch.fx ShapeProp with a
FakeTensorMode: shapes, no arithmetic; evaluation mode, the module's train flags restored
after) on a batch of 2: the patterns are recognized by shape, never by the literal arguments
(which are `x.size()` proxies).
"""

from __future__ import annotations

import contextlib
import io
import operator
import re
import sys
from pathlib import Path

import numpy as np

from . import Imported, ImportFileError, UnsupportedError
from .calls import call_function

_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_BATCH = 2  # the shape run's batch: 2, so the batch axis is never mistaken for a size-1 axis


class _Unsupported(Exception):
    """One node that skylark cannot express: what (op=..., module=..., attribute=...)."""


# --- module handlers: (module, input shape (N, C, H, W) or (N, F)) -> (spec fields, state) ---


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(t) for t in v]


def _attr(mod, name: str, value) -> _Unsupported:
    return _Unsupported(f"attribute {name}={value!r} of {type(mod).__name__}")


def _conv(mod, shape):
    if mod.padding_mode != "zeros":
        raise _attr(mod, "padding_mode", mod.padding_mode)
    padding = mod.padding if isinstance(mod.padding, str) else _pair(mod.padding)
    # torch's "same" (stride 1 only) puts the odd pixel right/bottom, as skylark's TF "same"
    return {"kind": "conv2d", "in_channels": mod.in_channels, "out_channels": mod.out_channels,
            "kernel_size": _pair(mod.kernel_size), "stride": _pair(mod.stride),
            "padding": padding, "dilation": _pair(mod.dilation), "groups": mod.groups,
            "bias": mod.bias is not None}


def _batchnorm(mod, shape):
    if mod.momentum is None:  # a cumulative average: skylark's running stats are exponential
        raise _attr(mod, "momentum", None)
    if not mod.track_running_stats:
        raise _attr(mod, "track_running_stats", False)
    if not mod.affine:
        raise _attr(mod, "affine", False)
    return {"kind": "batchnorm2d", "num_features": mod.num_features, "eps": float(mod.eps),
            "momentum": float(mod.momentum)}


def _linear(mod, shape):
    return {"kind": "dense", "in_features": mod.in_features, "out_features": mod.out_features,
            "bias": mod.bias is not None}


def _window(mod, name: str) -> dict:
    stride = mod.stride if mod.stride is not None else mod.kernel_size
    return {"kind": name, "kernel_size": _pair(mod.kernel_size), "stride": _pair(stride),
            "padding": _pair(mod.padding)}


def _maxpool(mod, shape):
    if mod.return_indices:
        raise _attr(mod, "return_indices", True)
    return {**_window(mod, "maxpool2d"), "dilation": _pair(mod.dilation),
            "ceil_mode": bool(mod.ceil_mode)}


def _pool_size(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    """torch's pooled length (ceil_mode drops a last window that starts in the padding)."""
    if not ceil:
        return (n + 2 * p - k) // s + 1
    out = -(-(n + 2 * p - k) // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out


def _avgpool(mod, shape):
    if mod.divisor_override is not None:
        raise _attr(mod, "divisor_override", mod.divisor_override)
    s = _window(mod, "avgpool2d")
    if mod.ceil_mode and any(  # skylark's avgpool2d has no ceil_mode: fine where it changes nothing
            _pool_size(n, k, st, p, True) != _pool_size(n, k, st, p, False)
            for n, k, st, p in zip(shape[2:], s["kernel_size"], s["stride"], s["padding"],
                                   strict=True)):
        raise _attr(mod, "ceil_mode", True)
    return {**s, "count_include_pad": bool(mod.count_include_pad)}


def _adaptive(output_size, shape) -> dict:
    size = [output_size] * 2 if output_size is None or isinstance(output_size, int) \
        else list(output_size)
    return {"kind": "adaptiveavgpool2d",
            "output_size": [int(shape[2 + i]) if o is None else int(o)
                            for i, o in enumerate(size)]}


def _flatten_module(mod, shape):
    if mod.start_dim != 1 or mod.end_dim not in (-1, len(shape) - 1):
        raise _attr(mod, "start_dim, end_dim", (mod.start_dim, mod.end_dim))
    return {"kind": "flatten"}


def _zeropad(mod, shape):
    if float(mod.value) != 0.0:
        raise _attr(mod, "value", mod.value)
    return {"kind": "zeropad2d", "padding": [int(p) for p in mod.padding]}


def _modules() -> dict:
    from torch import nn

    table = {
        nn.Conv2d: _conv, nn.BatchNorm2d: _batchnorm, nn.Linear: _linear,
        nn.MaxPool2d: _maxpool, nn.AvgPool2d: _avgpool,
        nn.AdaptiveAvgPool2d: lambda m, shape: _adaptive(m.output_size, shape),
        nn.Flatten: _flatten_module, nn.Dropout: lambda m, shape: {"kind": "dropout", "p": m.p},
        nn.Identity: lambda m, shape: {"kind": "identity"},
        nn.ZeroPad2d: _zeropad, nn.ConstantPad2d: _zeropad,
        nn.ChannelShuffle: lambda m, shape: {"kind": "channelshuffle", "groups": m.groups},
        nn.LeakyReLU: lambda m, shape: {"kind": "leaky_relu",
                                        "negative_slope": float(m.negative_slope)},
        nn.GELU: lambda m, shape: {"kind": "gelu", "approximate": m.approximate},
    }
    for cls, kind in ((nn.ReLU, "relu"), (nn.ReLU6, "relu6"), (nn.Sigmoid, "sigmoid"),
                      (nn.Tanh, "tanh"), (nn.Hardswish, "hardswish"),
                      (nn.Hardsigmoid, "hardsigmoid"), (nn.SiLU, "silu")):
        table[cls] = lambda m, shape, kind=kind: {"kind": kind}
    tv = sys.modules.get("torchvision")  # not imported: no module of the model is its
    if tv is not None and hasattr(tv, "ops"):
        table[tv.ops.StochasticDepth] = lambda m, shape: {
            "kind": "stochasticdepth", "p": float(m.p), "mode": m.mode}
    return table


# --- the tracer --------------------------------------------------------------------------------


def _tracer(table: dict):
    import torch.fx as fx

    class Tracer(fx.Tracer):
        """Keeps every module skylark maps 1:1 (by exact type: a subclass may change forward)
        as a leaf, and torch.nn's own modules (which it cannot map: reported by name)."""

        def is_leaf_module(self, m, qualname):
            return type(m) in table or super().is_leaf_module(m, qualname)

    return Tracer()


# --- the importer -------------------------------------------------------------------------------


def _resolve(obj):
    """`obj` itself, or what "pkg.mod:attr" returns when called with no arguments."""
    from torch import nn

    if isinstance(obj, str):
        if ":" not in obj.strip(":"):
            raise ValueError(f"a torch model is an nn.Module or 'pkg.mod:function'. "
                             f"Received: {obj!r}")
        obj = call_function(obj)
    if not isinstance(obj, nn.Module):
        raise ValueError(f"a torch model must be an nn.Module. Received: {type(obj).__name__}")
    return obj


def load_state_dict_file(path) -> dict:
    """A state_dict read with `torch.load(weights_only=True)`: tensors and plain containers
    only, so a pickle that would run code is refused (ImportFileError, one line)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"no state_dict file at this path. Received: {str(path)!r}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's UnpicklingError and friends: say why, once
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImportFileError(f"{str(path)!r} cannot be read safely as a torch state_dict "
                              f"(weights_only=True refused it): {why}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ImportFileError(f"{str(path)!r} is not a torch state_dict (a dict of tensors). "
                              f"Received: {type(sd).__name__}")
    return sd


class _Graph:
    """One trace turned into spec entries; `items` collects what cannot be expressed."""

    def __init__(self, module, input_shape) -> None:
        import torch
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.passes.shape_prop import ShapeProp

        self.module, self.table = module, _modules()
        graph = _tracer(self.table).trace(module)
        self.gm = torch.fx.GraphModule(module, graph)
        self.nodes = list(graph.nodes)
        modes = {m: m.training for m in module.modules()}
        dtype = next((p.dtype for p in module.parameters()), torch.float32)
        # fake tensors: shapes without arithmetic (torch's float64 depthwise conv alone takes
        # tens of seconds on mobilenet_v2 at 64x64), on a fake copy of the weights
        fake = FakeTensorMode()
        try:
            self.gm.eval()
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # its traceback
                ShapeProp(self.gm, fake_mode=fake).propagate(
                    fake.from_tensor(torch.zeros(_BATCH, *input_shape, dtype=dtype)))
        except Exception as e:  # the input does not fit: torch's message
            cause = e.__cause__ or e
            raise ValueError(f"the module does not run on input_shape {tuple(input_shape)}: "
                             f"{str(cause).strip().splitlines()[0]}") from None
        finally:
            for m, t in modes.items():
                m.training = t
        self.items: list[str] = []
        self.spec: list[dict] = []
        self.state: dict[str, np.ndarray] = {}
        self.origin: dict[str, str] = {}
        self.notes: list[str] = []
        self.env: dict = {}  # fx node -> "input" / a skylark node name / ("seq", [...]) / None
        self.calls: dict[str, int] = {}
        self.taken = {n for n, _ in module.named_modules() if n}
        self.skip: set = set()
        self.shuffles: dict = {}  # the last view of a shuffle pattern -> (source, groups)
        self.renamed: dict[str, str] = {}  # a module path skylark cannot name -> its name
        self._split_names: dict = {}  # a chunk/split node -> the prefix of its parts' names

    # - names and shapes -

    @staticmethod
    def shape(node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta") if hasattr(node, "meta") else None
        return tuple(int(d) for d in meta.shape) if hasattr(meta, "shape") else None

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def function_name(self, node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        scope = next(reversed(stack.values()))[0] if stack else ""
        op = re.sub(r"_\d+$", "", node.name)
        return self.fresh(f"{scope}.{op}" if scope else op)

    def emit(self, node, entry: dict, name: str, inputs: list[str], source: str) -> str:
        if not _NAME.fullmatch(name):
            clean = re.sub(r"[^A-Za-z0-9_.]", "_", name).strip(".")
            renamed = self.fresh(clean)
            self.renamed[name] = renamed
            name = renamed
        self.spec.append({**entry, "name": name, "inputs": list(inputs)})
        self.origin[name] = source
        return name

    def tensor(self, node, arg):
        """The skylark source of a tensor argument; _Unsupported for a constant."""
        import torch.fx as fx

        if isinstance(arg, fx.Node):
            v = self.env.get(arg)
            if isinstance(v, str) or v is None:
                return v
        what = type(arg).__name__ if not isinstance(arg, int | float) else repr(arg)
        raise _Unsupported(f"op={_op_name(node)} with a constant operand {what}")

    # - the walk -

    def run(self) -> None:
        for node in self.nodes:
            if node in self.skip:
                continue
            try:
                self.env[node] = self.visit(node)
            except _Unsupported as e:
                self.items.append(f"{e} at node {self.where(node)!r}")
                self.env[node] = None  # what reads it is still checked, not blamed for it

    def where(self, node) -> str:
        return str(node.target) if node.op == "call_module" else node.name

    def visit(self, node):
        if node.op == "placeholder":
            if node is not self.nodes[0]:
                raise _Unsupported(f"a second input {node.name!r}")
            return "input"
        if node.op == "output":
            return None
        if node.op == "get_attr":
            raise _Unsupported(f"get_attr={node.target} (a parameter or buffer used outside "
                               "a module skylark maps)")
        self.check_in_place(node)
        if node.op == "call_module":
            return self.visit_module(node)
        return self.visit_function(node)

    def check_in_place(self, node) -> None:
        """An in-place op whose input is read again later: fx's graph reads the old value,
        torch the overwritten one."""
        mod = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        op = _op_name(node)
        at = _INPLACE_AT.get(op)
        in_place = getattr(mod, "inplace", False) if mod is not None else (
            node.kwargs.get("inplace") is True
            or (node.op == "call_function" and at is not None and len(node.args) > at
                and node.args[at] is True)
            or (op.endswith("_") and not op.startswith("__")))
        if not in_place or not node.args or not hasattr(node.args[0], "users"):
            return
        order = {n: i for i, n in enumerate(self.nodes)}
        later = [u.name for u in node.args[0].users if order[u] > order[node]]
        if later:
            what = f"module={type(mod).__name__}" if mod is not None else f"op={op}"
            raise _Unsupported(f"{what} in place overwrites "
                               f"{node.args[0].name!r}, which {later[0]!r} reads afterwards")

    def visit_module(self, node):
        mod = self.gm.get_submodule(node.target)
        handler = self.table.get(type(mod))
        if handler is None:
            raise _Unsupported(f"module={type(mod).__name__}")
        if len(node.args) != 1 or node.kwargs:
            raise _Unsupported(f"module={type(mod).__name__} called with "
                               f"{len(node.args)} positional and {len(node.kwargs)} keyword "
                               "arguments")
        src = self.tensor(node, node.args[0])
        entry = handler(mod, self.shape(node.args[0]))
        path = str(node.target)
        count = self.calls.get(path, 0)
        self.calls[path] = count + 1
        own = {k: v for k, v in mod.state_dict().items() if not k.endswith("num_batches_tracked")}
        if count and own:
            raise _Unsupported(f"module={type(mod).__name__} called twice (shared weights)")
        name = path if not count else self.fresh(f"{path}_{count}")
        if not count:
            self.taken.add(path)
        name = self.emit(node, entry, name, [src], path)
        for k, v in own.items():
            self.state[f"{name}.{k}"] = v.detach().cpu().numpy().copy()
        return name

    def visit_function(self, node):
        if _is_split(node):  # a tuple of maps: its getitems are the channelslices
            return self.split(node)
        if node.meta.get("tensor_meta") is None:
            return ("meta",)  # ints: x.size(0), shape arithmetic (read only by views)
        if node.op == "call_function" and node.target is operator.getitem:
            return self.getitem(node)
        if node in self.shuffles:
            src, groups = self.shuffles[node]
            return self.emit(node, {"kind": "channelshuffle", "groups": groups},
                             self.function_name_as(node, "shuffle"), [src], node.name)
        op = _op_name(node)
        handler = _FUNCTIONS.get(op)
        if handler is None:
            raise _Unsupported(f"op={op}")
        return handler(self, node)

    def function_name_as(self, node, op: str) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        scope = next(reversed(stack.values()))[0] if stack else ""
        return self.fresh(f"{scope}.{op}" if scope else op)

    def split(self, node):
        """chunk/split on the channels: the parts' (start, stop), read from their shapes."""
        args = _args(node, ("input", "size", "dim"), {"dim": 0})
        src = self.tensor(node, args["input"])
        in_shape = self.shape(args["input"])
        if _axis(args["dim"], len(in_shape)) != 1:
            raise _Unsupported(f"op={_op_name(node)} on dim={args['dim']} (only the channels, "
                               "dim=1)")
        parts, start = [], 0
        for meta in node.meta["tensor_meta"]:
            stop = start + int(meta.shape[1])
            parts.append((start, stop))
            start = stop
        return ("seq", src, parts)

    def getitem(self, node):
        base, index = node.args
        v = self.env.get(base)
        if v is None:
            return None  # its source is already reported
        if isinstance(v, tuple) and v[0] == "seq":
            _, src, parts = v
            start, stop = parts[index]
            name = self.fresh(f"{self.name_of_split(base)}.{index}")
            return self.emit(node, {"kind": "channelslice", "start": start, "stop": stop},
                             name, [src], node.name)
        src = self.tensor(node, base)
        in_shape = self.shape(base)
        index = index if isinstance(index, tuple) else (index,)
        full = slice(None, None, None)
        rest = [i for i in index[2:] if i is not Ellipsis]
        if len(index) >= 2 and index[0] == full and isinstance(index[1], slice) \
                and index[1].step in (None, 1) and all(i == full for i in rest):
            start, stop, _ = index[1].indices(in_shape[1])
            if (start, stop) == (0, in_shape[1]):
                return src
            return self.emit(node, {"kind": "channelslice", "start": start, "stop": stop},
                             self.function_name_as(node, "slice"), [src], node.name)
        raise _Unsupported(f"op=getitem with index {index!r} (only x[:, a:b] on the channels)")

    def name_of_split(self, node) -> str:
        if node not in self._split_names:
            self._split_names[node] = self.function_name_as(node, re.sub(r"_\d+$", "",
                                                                         node.name))
        return self._split_names[node]

    def match_shuffle(self, node) -> bool:
        """view(N, g, C/g, H, W) -> transpose(1, 2) -> [contiguous] -> view(N, C, H, W)."""
        src = node.args[0] if node.args else None
        s_in, s_mid = self.shape(src), self.shape(node)
        if s_in is None or s_mid is None or len(s_in) != 4 or len(s_mid) != 5 \
                or s_mid[0] != s_in[0] or s_mid[3:] != s_in[2:] \
                or s_mid[1] * s_mid[2] != s_in[1] or len(node.users) != 1:
            return False
        chain, cur = [], next(iter(node.users))
        if _op_name(cur) != "transpose" or sorted(_transpose_dims(cur, 5)) != [1, 2] \
                or len(cur.users) != 1:
            return False
        chain.append(cur)
        cur = next(iter(cur.users))
        if _op_name(cur) == "contiguous" and len(cur.users) == 1:
            chain.append(cur)
            cur = next(iter(cur.users))
        if _op_name(cur) not in ("view", "reshape") or self.shape(cur) != s_in:
            return False
        self.skip.update(chain)
        self.shuffles[cur] = (self.tensor(node, src), s_mid[1])
        return True


# where F.<op>'s `inplace` is when given positionally
_INPLACE_AT = {"relu": 1, "relu6": 1, "hardswish": 1, "hardsigmoid": 1, "silu": 1,
               "leaky_relu": 2, "dropout": 3}


def _op_name(node) -> str:
    if node.op == "call_method":
        return str(node.target)
    if node.op == "call_module":
        return str(node.target)
    t = node.target
    return {operator.add: "add", operator.iadd: "add", operator.mul: "mul",
            operator.imul: "mul", operator.getitem: "getitem", operator.floordiv: "floordiv",
            operator.truediv: "truediv", operator.sub: "sub"}.get(
        t, getattr(t, "__name__", str(t)))


def _is_split(node) -> bool:
    return node.op in ("call_function", "call_method") and _op_name(node) in ("chunk", "split")


def _args(node, names: tuple[str, ...], defaults: dict) -> dict:
    """The call's arguments by name (positional ones bound in `names`' order)."""
    out = dict(defaults)
    out.update(dict(zip(names, node.args, strict=False)))
    if len(node.args) > len(names):
        raise _Unsupported(f"op={_op_name(node)} with {len(node.args)} positional arguments")
    out.update(node.kwargs)
    return out


def _axis(d, rank: int):
    if isinstance(d, int | list | tuple):
        return sorted(a % rank for a in d) if isinstance(d, list | tuple) else d % rank
    return d


def _transpose_dims(node, rank: int) -> list[int]:
    a = _args(node, ("input", "dim0", "dim1"), {})
    return [a["dim0"] % rank, a["dim1"] % rank] if isinstance(a.get("dim0"), int) \
        and isinstance(a.get("dim1"), int) else []


# --- function and method handlers: (graph, node) -> a skylark source (a name, or "input") -------


def _activation(kind: str, **fields):
    def handler(g: _Graph, node):
        a = _args(node, ("input", *fields), {k: v for k, v in fields.items()})
        src = g.tensor(node, a["input"])
        extra = {k: (float(a[k]) if isinstance(v, float) else a[k]) for k, v in fields.items()}
        return g.emit(node, {"kind": kind, **extra}, g.function_name(node), [src], node.name)
    return handler


def _alias(g: _Graph, node):
    return g.tensor(node, node.args[0])


def _merge(kind: str):
    def handler(g: _Graph, node):
        a = _args(node, ("input", "other"), {})
        if a.get("alpha", 1) != 1:
            raise _Unsupported(f"attribute alpha={a['alpha']!r} of op={_op_name(node)}")
        x, y = a["input"], a["other"]
        sx, sy = g.shape(x) if hasattr(x, "op") else None, g.shape(y) if hasattr(y, "op") else None
        srcs = [g.tensor(node, x), g.tensor(node, y)]
        if kind == "multiply" and sx is not None and sy is not None and sx != sy \
                and all(a_ in (1, b_) for a_, b_ in zip(sx, sy, strict=False)):
            srcs.reverse()  # skylark's multiply takes [x, gate]: the broadcast gate second
        return g.emit(node, {"kind": kind}, g.function_name(node), srcs, node.name)
    return handler


def _cat(g: _Graph, node):
    a = _args(node, ("tensors", "dim"), {"dim": 0})
    parts = list(a["tensors"])
    rank = len(g.shape(node))
    if _axis(a["dim"], rank) != 1:
        raise _Unsupported(f"op=cat on dim={a['dim']} (only the channels, dim=1)")
    srcs = [g.tensor(node, t) for t in parts]
    if len(srcs) == 1:
        return srcs[0]  # DenseNet's first layer concatenates one map: itself
    return g.emit(node, {"kind": "concat"}, g.function_name(node), srcs, node.name)


def _flatten(g: _Graph, node):
    a = _args(node, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
    rank = len(g.shape(a["input"]))
    if a["start_dim"] % rank != 1 or a["end_dim"] % rank != rank - 1:
        raise _Unsupported(f"op=flatten with start_dim={a['start_dim']}, "
                           f"end_dim={a['end_dim']} (only torch.flatten(x, 1))")
    src = g.tensor(node, a["input"])
    if rank == 2:
        return src
    return g.emit(node, {"kind": "flatten"}, g.function_name(node), [src], node.name)


def _view(g: _Graph, node):
    x = node.args[0]
    s_in, s_out = g.shape(x), g.shape(node)
    if g.match_shuffle(node):
        return None  # the last view of the pattern emits the channelshuffle
    src = g.tensor(node, x)
    if s_out == s_in:
        return src
    if len(s_in) == 4 and s_out == (s_in[0], s_in[1] * s_in[2] * s_in[3]):
        return g.emit(node, {"kind": "flatten"}, g.function_name_as(node, "flatten"), [src],
                      node.name)
    raise _Unsupported(f"op={_op_name(node)} from {s_in} to {s_out} (only x.view(N, -1) of a "
                       "map, or ShuffleNet's channel shuffle)")


def _mean(g: _Graph, node):
    a = _args(node, ("input", "dim", "keepdim"), {"keepdim": False})
    rank = len(g.shape(a["input"]))
    if a.get("dtype") is not None or _axis(a.get("dim"), rank) != [2, 3] or rank != 4:
        raise _Unsupported(f"op=mean over dim={a.get('dim')!r} (only [2, 3] of a map)")
    src = g.tensor(node, a["input"])
    entry = {"kind": "adaptiveavgpool2d", "output_size": [1, 1]} if a["keepdim"] \
        else {"kind": "globalavgpool2d"}
    return g.emit(node, entry, g.function_name(node), [src], node.name)


def _adaptive_fn(g: _Graph, node):
    a = _args(node, ("input", "output_size"), {})
    src = g.tensor(node, a["input"])
    return g.emit(node, _adaptive(a["output_size"], g.shape(a["input"])), g.function_name(node),
                  [src], node.name)


def _pool_fn(kind: str):
    def handler(g: _Graph, node):
        names = ("input", "kernel_size", "stride", "padding") + (
            ("dilation", "ceil_mode", "return_indices") if kind == "maxpool2d"
            else ("ceil_mode", "count_include_pad", "divisor_override"))
        a = _args(node, names, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                                "return_indices": False, "count_include_pad": True,
                                "divisor_override": None})
        from torch import nn

        cls = nn.MaxPool2d if kind == "maxpool2d" else nn.AvgPool2d
        mod = cls(**{k: v for k, v in a.items() if k in names and k != "input"
                     and not (k == "stride" and v in (None, []))})
        entry = (_maxpool if kind == "maxpool2d" else _avgpool)(mod, g.shape(a["input"]))
        src = g.tensor(node, a["input"])
        return g.emit(node, entry, g.function_name(node), [src], node.name)
    return handler


def _dropout_fn(g: _Graph, node):
    a = _args(node, ("input", "p", "training", "inplace"),
              {"p": 0.5, "training": node.op != "call_method", "inplace": False})
    src = g.tensor(node, a["input"])
    if not a["training"]:  # fx froze `training=self.training` at trace time
        g.notes.append(f"{node.name}: F.dropout(training=False) when traced, imported as "
                       "nothing (trace in train mode to keep it)")
        return src
    return g.emit(node, {"kind": "dropout", "p": float(a["p"])}, g.function_name(node), [src],
                  node.name)


def _pad_fn(g: _Graph, node):
    a = _args(node, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None})
    pad = [int(p) for p in a["pad"]]
    if a["mode"] != "constant" or a["value"] not in (None, 0, 0.0) or len(pad) not in (2, 4):
        raise _Unsupported(f"op=pad with mode={a['mode']!r}, value={a['value']!r}, "
                           f"pad={pad} (only zero padding of H and W)")
    src = g.tensor(node, a["input"])
    return g.emit(node, {"kind": "zeropad2d", "padding": [*pad, 0, 0][:4]},
                  g.function_name(node), [src], node.name)


def _gelu_fn(g: _Graph, node):
    a = _args(node, ("input",), {"approximate": "none"})
    src = g.tensor(node, a["input"])
    return g.emit(node, {"kind": "gelu", "approximate": a["approximate"]},
                  g.function_name(node), [src], node.name)


_FUNCTIONS = {
    "add": _merge("add"), "add_": _merge("add"), "iadd": _merge("add"), "__iadd__": _merge("add"),
    "mul": _merge("multiply"), "mul_": _merge("multiply"), "imul": _merge("multiply"),
    "cat": _cat, "concat": _cat, "flatten": _flatten, "view": _view, "reshape": _view,
    "contiguous": _alias, "mean": _mean, "adaptive_avg_pool2d": _adaptive_fn,
    "max_pool2d": _pool_fn("maxpool2d"), "_max_pool2d": _pool_fn("maxpool2d"),
    "avg_pool2d": _pool_fn("avgpool2d"), "dropout": _dropout_fn, "pad": _pad_fn,
    "gelu": _gelu_fn, "leaky_relu": _activation("leaky_relu", negative_slope=0.01),
}
for _n, _k in (("relu", "relu"), ("relu_", "relu"), ("relu6", "relu6"), ("sigmoid", "sigmoid"),
               ("sigmoid_", "sigmoid"), ("tanh", "tanh"), ("tanh_", "tanh"),
               ("hardswish", "hardswish"), ("hardsigmoid", "hardsigmoid"), ("silu", "silu")):
    _FUNCTIONS[_n] = _activation(_k)


def _prune(spec: list[dict], out: str) -> list[dict]:
    """The entries the output depends on (fx keeps dead branches, e.g. a torchvision aux
    head that is not called still traces nothing, but a computed-and-dropped value does)."""
    need, keep = {out}, []
    for s in reversed(spec):
        if s["name"] in need:
            keep.append(s)
            need.update(s["inputs"])
    return keep[::-1]


def _finish(entries: list[dict]) -> list[dict]:
    """Spec entries with "inputs" written only where they are not the entry before."""
    out, prev = [], "input"
    for s in entries:
        s = dict(s)
        if s["inputs"] == [prev]:
            del s["inputs"]
        out.append(s)
        prev = s["name"]
    return out


def _trace(obj, input_shape, state_dict) -> _Graph:
    module = _resolve(obj)
    if state_dict is not None:
        sd = load_state_dict_file(state_dict)
        try:
            module.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ImportFileError(f"{str(state_dict)!r} does not fit the module: "
                                  f"{' '.join(str(e).split())}") from None
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape is (C, H, W). Received: input_shape={input_shape!r}")
    g = _Graph(module, input_shape)
    g.run()
    outs = [n for n in g.nodes if n.op == "output"]
    out_arg = outs[0].args[0] if outs else None
    if not hasattr(out_arg, "op"):
        g.items.append(f"op=output returning {type(out_arg).__name__} (skylark models have "
                       "one tensor output)")
    g.out = g.env.get(out_arg) if hasattr(out_arg, "op") else None
    if g.renamed:
        first = next(iter(g.renamed.items()))
        g.notes.append(f"{len(g.renamed)} node(s) renamed, their state keys with them (skylark "
                       f"names are [A-Za-z0-9_] parts joined by dots): {first[0]!r} -> "
                       f"{first[1]!r}, ...; origin maps each back to the module path")
    return g


def list_unsupported(obj, input_shape) -> list[str]:
    """Every op, module, attribute and pattern of `obj` skylark cannot express (empty: it
    imports)."""
    return _trace(obj, input_shape, None).items


def import_torch(obj, *, input_shape, state_dict=None) -> Imported:
    """`obj` (an nn.Module, or "pkg.mod:function" returning one) as an Imported (source "torch"):
    node names are module paths, so `imp.state` has the module's state_dict keys (without
    BatchNorm's num_batches_tracked). UnsupportedError lists everything skylark cannot say;
    ImportFileError for a `state_dict` file that cannot be read safely."""
    g = _trace(obj, input_shape, state_dict)
    if g.items:
        raise UnsupportedError(g.items, "torch")
    out = g.out
    spec = list(g.spec)
    if out == "input":  # the module returns its input
        spec.append({"kind": "identity", "name": "identity", "inputs": ["input"]})
        out = "identity"
    spec = _prune(spec, out)
    names = {s["name"] for s in spec}
    state = {k: v for k, v in g.state.items() if k.rsplit(".", 1)[0] in names}
    return Imported(spec=_finish(spec), state=state, input_shape=tuple(input_shape),
                    source="torch", origin={k: v for k, v in g.origin.items() if k in names},
                    notes=g.notes)


__all__ = ["import_torch", "list_unsupported", "load_state_dict_file"]
