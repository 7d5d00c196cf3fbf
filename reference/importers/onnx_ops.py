"""The walk over an ONNX graph that writes the skylark spec: one handler per op.

Every value is a numpy array (a constant: initializers, Constant nodes, and shape arithmetic
folded on them) or a `T`: a tensor of the data path, the spec node that computes it, its
per-sample shape ((C, H, W) or (F,)), and, for a pattern under way (a Transpose waiting for the
Reshape that makes it a flatten or a channel shuffle, a Pad waiting for its Conv), `pending`.
A value whose node could not be mapped is `BAD`: what reads it is skipped, so one unsupported
op is reported once, not once per node after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .onnx_file import tensor_array
from .onnx_names import Namer

BATCH = 2**31 - 5  # the batch size Shape reports: no real dimension has it; fits an int32 Cast
MAX_FOLD = 1 << 24  # the most elements a folded constant may have (shape arithmetic is tiny)
BAD = object()


@dataclass
class T:
    node: str  # the spec node computing it, or "input"
    shape: tuple
    order: np.ndarray | None = None  # flat features: skylark's feature index of each one
    pending: tuple | None = None


def _f32(v: float) -> float:
    """A float32 attribute as the decimal it was written from (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(v)))


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def tf_same(size, k, s, d=(1, 1)):
    """TF's "same" pads (top, bottom, left, right): output ceil(size / s), the odd pixel last."""
    out = []
    for n, kk, ss, dd in zip(size, k, s, d, strict=True):
        total = max((math.ceil(n / ss) - 1) * ss + (kk - 1) * dd + 1 - n, 0)
        out.append((total // 2, total - total // 2))
    return (*out[0], *out[1])


def _window_pads(a: dict, size, k, s, d, where, bad) -> tuple | None:
    """(top, bottom, left, right) of a Conv or pool from pads / auto_pad."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        t, b, l, r = tf_same(size, k, s, d)
        return (t, b, l, r) if auto == "SAME_UPPER" else (b, t, r, l)
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        bad(f"attribute auto_pad={auto} of {where}")
        return None
    p = list(a.get("pads", [0, 0, 0, 0]))
    return (p[0], p[2], p[1], p[3])


class Walk:
    """The walk's state: the spec so far, the state, origins, notes, unsupported items."""

    def __init__(self, model, folder, path) -> None:
        self.model, self.folder, self.path = model, folder, path
        self.spec: list[dict] = []
        self.state: dict[str, np.ndarray] = {}
        self.origin: dict[str, str] = {}
        self.notes: list[str] = []
        self.unsupported: list[str] = []
        self.names = Namer()
        self.values: dict = {}
        self.readers: dict[str, int] = {}
        self.entry: dict[str, dict] = {}  # spec node name -> its entry
        self.nhwc = False
        self.out_value: dict[str, str] = {}  # spec node -> the ONNX value it wrote
        self.batch = -1  # the input's batch size where the file fixes it (a fixed Reshape)

    # --- set-up -----------------------------------------------------------------------------

    def nhwc_input(self, nodes) -> bool:
        """True when the data input reaches a Transpose to NCHW through nothing but
        arithmetic with scalar or per-channel constants (tf2onnx's Keras: Rescaling,
        Normalization), each read by one node: the graph behind it is NCHW."""
        inits = {t.name: t for t in self.model.graph.initializer}
        data = [v.name for v in self.model.graph.input if v.name not in inits]
        if len(data) != 1:
            return False
        value = data[0]
        while True:
            readers = [n for n in nodes if value in n.input]
            if len(readers) != 1:
                return False
            n = readers[0]
            if n.op_type == "Transpose":
                self.nhwc = list(_attrs(n).get("perm", [])) == [0, 3, 1, 2]
                return self.nhwc
            other = [v for v in n.input if v != value]
            if n.op_type not in ("Mul", "Add", "Sub", "Div") or len(other) != 1 \
                    or other[0] not in inits or len(inits[other[0]].dims) > 1:
                return False
            value = n.output[0]

    def run(self, nodes, input_name: str, shape) -> None:
        for t in self.model.graph.initializer:
            self.values[t.name] = tensor_array(t, self.folder, self.path)
        self.values[input_name] = T("input", tuple(shape), pending=("nhwc_in",)
                                    if self.nhwc else None)
        if self.nhwc:
            self.notes.append("the file's input is NHWC and goes through a Transpose to NCHW: "
                              f"imported as the NCHW graph behind it, input {tuple(shape)}")
        outputs = [o.name for o in self.model.graph.output]
        if len(outputs) != 1:
            self.unsupported.append(f"pattern: {len(outputs)} graph outputs (skylark models "
                                    f"have one) at outputs {outputs}")
        nodes = self._live(nodes, outputs)
        for n in nodes:
            for v in n.input:
                self.readers[v] = self.readers.get(v, 0) + 1
        for n in nodes:
            self.node(n)
        out = self.values.get(outputs[0]) if outputs else None
        if out is BAD or self.unsupported:
            return
        if not isinstance(out, T) or out.pending or out.node == "input":
            self.unsupported.append(f"pattern: graph output {outputs[0]!r} is not computed "
                                    "by a layer")
        elif self.spec and self.spec[-1]["name"] != out.node:
            self.unsupported.append(f"pattern: graph output {outputs[0]!r} is not the last "
                                    "layer's")

    @staticmethod
    def _live(nodes, outputs):
        """The nodes the outputs depend on (the rest is dropped)."""
        need, keep = set(outputs), []
        for n in reversed(nodes):
            if any(o in need for o in n.output):
                keep.append(n)
                need.update(n.input)
        return keep[::-1]

    # --- helpers ----------------------------------------------------------------------------

    def bad(self, item: str) -> None:
        if item not in self.unsupported:
            self.unsupported.append(item)

    def emit(self, node, entry: dict, inputs: list[T], shape, params=None, weight=None,
             order=None) -> T:
        name = self.names.name(node, weight)
        ins = [t.node for t in inputs]
        entry = {**entry, "name": name, "inputs": ins}
        self.spec.append(entry)
        self.entry[name] = entry
        self.origin[name] = node.name or node.op_type
        for k, v in (params or {}).items():
            self.state[f"{name}.{k}"] = np.array(v)
        return T(name, tuple(shape), order=order)

    def const(self, v):
        return isinstance(v, np.ndarray)

    # --- the walk ---------------------------------------------------------------------------

    def node(self, n) -> None:
        ins = [self.values.get(v) if v else None for v in n.input]
        where = f"op={n.op_type} at node '{n.name}'"
        if n.domain not in ("", "ai.onnx"):
            self.bad(f"op={n.domain}.{n.op_type} at node '{n.name}'")
            outs = [BAD] * len(n.output)
        elif any(v is BAD for v in ins):
            outs = [BAD] * len(n.output)
        elif n.op_type == "Constant":
            outs = [self._constant(n, where)]
        elif all(v is None or self.const(v) for v in ins) and n.op_type in FOLD:
            outs = self._fold(n, ins, where)
        elif n.op_type == "CastLike" and self.const(ins[0]) and isinstance(ins[1], T):
            outs = [ins[0]]  # a constant cast to the data's float type: kept in the file's
        elif n.op_type == "Shape" and isinstance(ins[0], T):
            a = _attrs(n)
            full = np.array([BATCH, *ins[0].shape], np.int64)
            outs = [full[a.get("start", 0):a.get("end", len(full))]]
        elif n.op_type in OPS:
            try:
                outs = OPS[n.op_type](self, n, ins, _attrs(n), where)
            except _Unsupported as e:
                self.bad(str(e))
                outs = None
        else:
            self.bad(where)
            outs = None
        if outs is None:
            outs = [BAD] * len(n.output)
        for o, v in zip(n.output, outs, strict=False):
            self.values[o] = v
            if isinstance(v, T) and v.node not in self.out_value:
                self.out_value[v.node] = o

    def readers_of_node(self, node: str) -> int:
        """How many ONNX nodes read the value spec node `node` wrote (a fold needs one)."""
        return self.readers.get(self.out_value.get(node, ""), 0)

    def _constant(self, n, where):
        a = _attrs(n)
        if "value" in a:
            return tensor_array(n.attribute[0].t if n.attribute[0].name == "value" else
                                next(x.t for x in n.attribute if x.name == "value"),
                                self.folder, self.path)
        for k, dt in (("value_float", np.float32), ("value_floats", np.float32),
                      ("value_int", np.int64), ("value_ints", np.int64)):
            if k in a:
                return np.array(a[k], dt)
        self.bad(f"attribute {next(iter(a), '?')} of {where}")
        return BAD

    def _fold(self, n, ins, where):
        try:
            outs = FOLD[n.op_type](ins, _attrs(n))
        except Exception as e:  # a malformed constant expression
            self.bad(f"pattern: cannot fold constant {where}: {str(e).splitlines()[0]}")
            return None
        if any(o.size > MAX_FOLD for o in outs):
            self.bad(f"pattern: constant over {MAX_FOLD} values at {where}")
            return None
        return outs


class _Unsupported(Exception):
    pass


def _need(cond, item: str) -> None:
    if not cond:
        raise _Unsupported(item)


def _tensor(v, where) -> T:
    _need(isinstance(v, T) and not v.pending, f"pattern: {where} reads "
          + ("a pattern skylark does not know" if isinstance(v, T) else "a constant as its data"))
    return v


def _map(v, where) -> T:
    t = _tensor(v, where)
    _need(len(t.shape) == 3, f"pattern: {where} reads a flat tensor of shape {t.shape}")
    return t


# --- constant folding (shape arithmetic; numpy on small int and float arrays) ------------------


def _fold_slice(ins, a):
    x, starts, ends = ins[0], ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
    steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for ax, s, e, st in zip(axes, starts, ends, steps, strict=True):
        idx[int(ax)] = slice(int(s), int(e), int(st))
    return [x[tuple(idx)]]


def _fold_unsqueeze(ins, a):
    axes = ins[1] if len(ins) > 1 else a["axes"]
    x = ins[0]
    for ax in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
        x = np.expand_dims(x, ax)
    return [x]


def _fold_squeeze(ins, a):
    axes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("axes")
    return [np.squeeze(ins[0], tuple(int(v) for v in axes) if axes is not None else None)]


def _fold_reshape(ins, a):
    shape = [int(s) for s in ins[1]]
    shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [ins[0].reshape(shape)]


def _fold_cast(ins, a):
    from onnx import helper

    return [ins[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))]


def _fold_constant_of_shape(ins, a):
    shape = [int(v) for v in np.asarray(ins[0]).reshape(-1)]
    if min(shape, default=1) < 0 or math.prod(shape) > MAX_FOLD:  # checked before allocating
        raise ValueError(f"ConstantOfShape of {shape}")
    from onnx import numpy_helper

    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    return [np.full(shape, value.reshape(-1)[0], value.dtype)]


FOLD = {
    "ConstantOfShape": _fold_constant_of_shape,
    "Identity": lambda ins, a: [ins[0]],
    "Cast": _fold_cast,
    "CastLike": lambda ins, a: [ins[0].astype(ins[1].dtype)],
    "Shape": lambda ins, a: [np.array(ins[0].shape, np.int64)[a.get("start", 0):
                                                                a.get("end", ins[0].ndim)]],
    "Expand": lambda ins, a: [np.broadcast_to(ins[0], np.broadcast_shapes(
        ins[0].shape, tuple(int(v) for v in ins[1])))],
    "Gather": lambda ins, a: [np.take(ins[0], ins[1], axis=a.get("axis", 0))],
    "Slice": _fold_slice,
    "Concat": lambda ins, a: [np.concatenate([np.atleast_1d(v) for v in ins], a["axis"])],
    "Unsqueeze": _fold_unsqueeze,
    "Squeeze": _fold_squeeze,
    "Reshape": _fold_reshape,
    "Transpose": lambda ins, a: [np.transpose(ins[0], a.get("perm"))],
    "Add": lambda ins, a: [ins[0] + ins[1]],
    "Sub": lambda ins, a: [ins[0] - ins[1]],
    "Mul": lambda ins, a: [ins[0] * ins[1]],
    "Div": lambda ins, a: [ins[0] / ins[1] if ins[0].dtype.kind == "f" else ins[0] // ins[1]],
    "Neg": lambda ins, a: [-ins[0]],
    "Sqrt": lambda ins, a: [np.sqrt(ins[0])],
}


# --- the ops on the data path ---------------------------------------------------------------


def _alias(w, n, ins, a, where):
    return [ins[0]]


def _pointwise(kind, **fields):
    def op(w, n, ins, a, where):
        t = _tensor(ins[0], where)
        _need(t.order is None or kind in ("relu", "leaky_relu"), f"pattern: {where} after a "
              "permuted flatten")
        return [w.emit(n, {"kind": kind, **fields}, [t], t.shape, order=t.order)]
    return op


def _leaky(w, n, ins, a, where):
    return _pointwise("leaky_relu", negative_slope=_f32(a.get("alpha", 0.01)))(w, n, ins, a,
                                                                             where)


def _hardsigmoid(w, n, ins, a, where):
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    _need(np.float32(alpha) == np.float32(1 / 6) and beta == 0.5,
          f"attribute alpha={_f32(alpha)}, beta={_f32(beta)} of {where} (skylark's "
          "hardsigmoid is torch's: alpha 1/6, beta 0.5)")
    return _pointwise("hardsigmoid")(w, n, ins, a, where)


def _clip(w, n, ins, a, where):
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
    lo = None if lo is None else float(np.asarray(lo))
    hi = None if hi is None else float(np.asarray(hi))
    if lo == 0 and hi == 6:
        return _pointwise("relu6")(w, n, ins, a, where)
    _need(lo == 0 and (hi is None or np.isinf(hi)),
          f"attribute min={lo}, max={hi} of {where} (skylark has Clip(0, 6) as relu6 and "
          "Clip(0) as relu)")
    return _pointwise("relu")(w, n, ins, a, where)


def _softmax(w, n, ins, a, where):
    t = _tensor(ins[0], where)
    _need(w.readers.get(n.output[0], 0) == 0, f"pattern: {where} is not the output")
    w.notes.append(f"the final Softmax (node '{n.name}') is left out: the imported model "
                   "ends at the logits")
    return [t]


def _dropout(w, n, ins, a, where):
    t = _tensor(ins[0], where)
    p = a.get("ratio", 0.5)
    if len(ins) > 1 and ins[1] is not None:
        p = float(np.asarray(ins[1]))
    return [w.emit(n, {"kind": "dropout", "p": _f32(p)}, [t], t.shape, order=t.order), None]


def _conv(w, n, ins, a, where):
    src, pre = ins[0], (0, 0, 0, 0)
    if isinstance(src, T) and src.pending and src.pending[0] == "pad":
        src, pre = src.pending[1], src.pending[2]
    t = _map(src, where)
    wt = ins[1]
    _need(w.const(wt) and wt.ndim == 4, f"pattern: {where} with a computed or non-2D weight")
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else None
    _need(bias is None or w.const(bias), f"pattern: {where} with a computed bias")
    c, h, wd = t.shape
    o, ig, kh, kw = wt.shape
    groups = int(a.get("group", 1))
    _need(ig * groups == c, f"pattern: {where}: weight {wt.shape} with group={groups} does "
          f"not fit {c} input channels")
    k, s, d = (kh, kw), tuple(a.get("strides", [1, 1])), tuple(a.get("dilations", [1, 1]))
    pads = _window_pads(a, (h, wd), k, s, d, where, w.bad)
    if pads is None:
        return None
    pads = tuple(p + q for p, q in zip(pads, pre, strict=True))
    padding, t = _conv_padding(w, n, t, pads, (h, wd), k, s, d, where)
    oh = (t.shape[1] + _sum(padding, 0, t.shape[1:], k, s) - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (t.shape[2] + _sum(padding, 1, t.shape[1:], k, s) - d[1] * (kw - 1) - 1) // s[1] + 1
    entry = {"kind": "conv2d", "in_channels": c, "out_channels": o, "kernel_size": [kh, kw],
             "stride": list(s), "padding": padding, "dilation": list(d), "groups": groups,
             "bias": bias is not None}
    params = {"weight": wt, **({"bias": bias} if bias is not None else {})}
    name = n.input[1]
    return [w.emit(n, entry, [t], (o, oh, ow), params, weight=name)]


def _sum(padding, axis, size, k, s):
    if padding == "same":
        p = tf_same(size, k, s)
        return p[2 * axis] + p[2 * axis + 1]
    return 2 * padding[axis]


def _conv_padding(w, n, t, pads, hw, k, s, d, where):
    """Symmetric pads as [ph, pw]; TF's rule as "same"; anything else a zeropad2d node first."""
    top, bottom, left, right = pads
    if top == bottom and left == right:
        return [top, left], t
    if d == (1, 1) and pads == tf_same(hw, k, s):
        return "same", t
    pad = _zeropad(w, n, t, pads)
    return [0, 0], pad


def _zeropad(w, n, t, pads):
    top, bottom, left, right = pads
    c, h, wd = t.shape
    return w.emit(_Named(n, "pad"), {"kind": "zeropad2d", "padding": [left, right, top,
                                                                      bottom]},
                  [t], (c, h + top + bottom, wd + left + right))


class _Named:
    """A stand-in ONNX node for a node the import adds before `n` (its Pad)."""

    def __init__(self, n, suffix):
        self.name, self.op_type, self.metadata_props = f"{n.name}.{suffix}", "Pad", []


def _pad(w, n, ins, a, where):
    t = _map(ins[0], where)
    pads = ins[1] if len(ins) > 1 else a.get("pads")
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = float(np.asarray(ins[2])) if len(ins) > 2 and ins[2] is not None else 0.0
    _need(w.const(np.asarray(pads)) and mode == "constant" and value == 0,
          f"attribute mode={mode}, value={value} of {where} (skylark pads with zeros)")
    _need(len(ins) < 4 or ins[3] is None, f"attribute axes of {where}")
    p = [int(v) for v in np.asarray(pads)]
    _need(len(p) == 8 and p[0] == p[1] == p[4] == p[5] == 0 and min(p) >= 0,
          f"attribute pads={p} of {where} (skylark pads H and W only, not negative)")
    pads4 = (p[2], p[6], p[3], p[7])
    readers = [m for m in w.model.graph.node if n.output[0] in m.input]
    if readers and all(m.op_type == "Conv" and m.input[0] == n.output[0] for m in readers):
        return [T(t.node, t.shape, pending=("pad", t, pads4))]  # folded into the Conv
    return [_zeropad(w, n, t, pads4)]


def _pool_common(w, n, t, a, where):
    _need(a.get("storage_order", 0) == 0, f"attribute storage_order of {where}")
    k = tuple(a["kernel_shape"])
    s = tuple(a.get("strides", [1, 1]))
    d = tuple(a.get("dilations", [1, 1]))
    pads = _window_pads(a, t.shape[1:], k, s, d, where, w.bad)
    _need(pads is not None, f"attribute auto_pad of {where}")
    return k, s, d, pads


def _out(size, k, s, d, lo, hi, ceil):
    span = size + lo + hi - d * (k - 1) - 1
    return (-(-span // s) if ceil else span // s) + 1


def _torch_ceil_out(size, k, s, d, p):
    out = _out(size, k, s, d, p, p, True)
    return out - 1 if (out - 1) * s >= size + p else out


def _maxpool(w, n, ins, a, where):
    t = _map(ins[0], where)
    _need(len(n.output) == 1 or not n.output[1], f"pattern: {where} with its indices output")
    k, s, d, (top, bottom, left, right) = _pool_common(w, n, t, a, where)
    ceil = bool(a.get("ceil_mode", 0))
    (c, h, wd) = t.shape
    oh = _out(h, k[0], s[0], d[0], top, bottom, ceil)
    ow = _out(wd, k[1], s[1], d[1], left, right, ceil)
    if top == bottom and left == right:
        padding = [top, left]
    elif not ceil and d == (1, 1) and (top, bottom, left, right) == tf_same((h, wd), k, s):
        padding = "same"
    elif not ceil and bottom >= top and right >= left and \
            _torch_ceil_out(h, k[0], s[0], d[0], top) == oh and \
            _torch_ceil_out(wd, k[1], s[1], d[1], left) == ow:
        padding, ceil = [top, left], True  # extra end pads that are torch's ceil_mode
    else:
        raise _Unsupported(f"attribute pads={[top, left, bottom, right]} of {where} "
                           "(asymmetric max-pool pads that are neither TF's 'same' nor "
                           "ceil_mode)")
    if ceil and top == bottom and left == right and ceil:
        oh = _torch_ceil_out(h, k[0], s[0], d[0], top)
        ow = _torch_ceil_out(wd, k[1], s[1], d[1], left)
    entry = {"kind": "maxpool2d", "kernel_size": list(k), "stride": list(s), "padding": padding,
             "dilation": list(d), "ceil_mode": ceil}
    return [w.emit(n, entry, [t], (c, oh, ow))]


def _avgpool(w, n, ins, a, where):
    t = _map(ins[0], where)
    k, s, d, pads = _pool_common(w, n, t, a, where)
    _need(d == (1, 1), f"attribute dilations={list(d)} of {where}")
    top, bottom, left, right = pads
    c, h, wd = t.shape
    cip = bool(a.get("count_include_pad", 0))
    oh, ow = _out(h, k[0], s[0], 1, top, bottom, False), _out(wd, k[1], s[1], 1, left, right,
                                                             False)
    if a.get("ceil_mode", 0):
        _need((_out(h, k[0], s[0], 1, top, bottom, True),
               _out(wd, k[1], s[1], 1, left, right, True)) == (oh, ow),
              f"attribute ceil_mode=1 of {where} (skylark's avgpool2d has no ceil_mode)")
    if top == bottom and left == right:
        padding = [top, left]
    elif not cip and pads == tf_same((h, wd), k, s):
        padding, cip = "same", None
    elif cip:
        t, padding = _zeropad(w, n, t, pads), [0, 0]
    else:
        raise _Unsupported(f"attribute pads={[top, left, bottom, right]} of {where} "
                           "(asymmetric, count_include_pad=0 and not TF's 'same')")
    entry = {"kind": "avgpool2d", "kernel_size": list(k), "stride": list(s), "padding": padding,
             "count_include_pad": cip}
    return [w.emit(n, entry, [t], (c, oh, ow))]


def _global_pool(w, n, ins, a, where):
    t = _map(ins[0], where)
    if n.op_type == "ReduceMean":
        axes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("axes")
        _need(axes is not None and sorted(int(x) % 4 for x in np.asarray(axes)) == [2, 3],
              f"attribute axes={None if axes is None else list(np.asarray(axes))} of {where} "
              "(skylark averages over H and W only)")
        if not a.get("keepdims", 1):
            return [w.emit(n, {"kind": "globalavgpool2d"}, [t], (t.shape[0],))]
    return [w.emit(n, {"kind": "adaptiveavgpool2d", "output_size": [1, 1]}, [t],
                   (t.shape[0], 1, 1))]


def _flatten_of(w, n, t: T, where) -> T:
    """A flatten of map `t`; a global pool read by nothing else becomes globalavgpool2d."""
    src = w.entry.get(t.node)
    if src and src["kind"] == "adaptiveavgpool2d" and src["output_size"] == [1, 1] \
            and w.readers_of_node(t.node) == 1:
        src.pop("output_size")
        src["kind"] = "globalavgpool2d"
        return T(t.node, (t.shape[0],))
    return w.emit(n, {"kind": "flatten"}, [t], (math.prod(t.shape),))


def _flatten(w, n, ins, a, where):
    t = _tensor(ins[0], where)
    _need(a.get("axis", 1) == 1, f"attribute axis={a.get('axis')} of {where}")
    if len(t.shape) == 1:
        return [t]
    return [_flatten_of(w, n, t, where)]


def _squeeze(w, n, ins, a, where):
    t = _map(ins[0], where)
    axes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("axes")
    _need(axes is not None and sorted(int(v) % 4 for v in np.asarray(axes)) == [2, 3]
          and t.shape[1:] == (1, 1), f"pattern: {where} other than of a (C, 1, 1) map's H, W")
    return [_flatten_of(w, n, t, where)]


def _reshape(w, n, ins, a, where):
    x, shape = ins[0], ins[1]
    _need(w.const(shape), f"pattern: {where} to a computed shape")
    tgt = [int(v) for v in shape]
    _need(isinstance(x, T), f"pattern: {where} of a constant")
    batch_ok = bool(tgt) and (tgt[0] in (BATCH, 0, -1, w.batch))
    if x.pending and x.pending[0] == "nhwc" and len(tgt) == 2 and batch_ok:
        src = x.pending[1]
        c, h, wd = src.shape
        order = np.arange(c * h * wd).reshape(c, h, wd).transpose(1, 2, 0).ravel()
        out = w.emit(n, {"kind": "flatten"}, [src], (c * h * wd,), order=order)
        w.notes.append(f"node '{n.name}': a Transpose to NHWC and a Reshape are a flatten in "
                       "H, W, C order: imported as skylark's (C, H, W) flatten, the Dense "
                       "weights after it permuted to match")
        return [out]
    if x.pending and x.pending[0] == "shuffle" and len(tgt) == 4 and batch_ok:
        src, g = x.pending[1], x.pending[2]
        _need(list(tgt[1:]) == list(src.shape), f"pattern: {where} after a 5-D Transpose")
        return [w.emit(n, {"kind": "channelshuffle", "groups": g}, [src], src.shape)]
    t = _tensor(x, where)
    _need(batch_ok, f"pattern: {where} to {tgt} (the batch dimension must stay first)")
    size = math.prod(t.shape)
    if len(tgt) == 2 and tgt[1] in (-1, size):
        return [t] if len(t.shape) == 1 else [_flatten_of(w, n, t, where)]
    if len(tgt) == 5 and len(t.shape) == 3 and tgt[1] > 0 and tgt[1] * tgt[2] == t.shape[0] \
            and tuple(tgt[3:]) == t.shape[1:]:
        return [T(t.node, t.shape, pending=("split", t, tgt[1]))]
    if len(tgt) == 4 and tuple(tgt[1:]) == t.shape:
        return [t]
    raise _Unsupported(f"pattern: {where} from {t.shape} to {tgt[1:]} (skylark reshapes only "
                       "to flatten or in a channel shuffle)")


def _transpose(w, n, ins, a, where):
    x, perm = ins[0], list(a.get("perm", []))
    _need(isinstance(x, T), f"pattern: {where} of a constant")
    if x.pending and x.pending[0] == "nhwc_in" and perm == [0, 3, 1, 2]:
        return [T(x.node, x.shape)]  # the input (or its rescaling), now NCHW
    if x.pending and x.pending[0] == "split" and perm == [0, 2, 1, 3, 4]:
        return [T(x.node, x.shape, pending=("shuffle", x.pending[1], x.pending[2]))]
    t = _map(x, where)
    if perm == [0, 2, 3, 1]:
        return [T(t.node, t.shape, pending=("nhwc", t))]
    _need(perm == [0, 1, 2, 3], f"attribute perm={perm} of {where}")
    return [t]


def _dense(w, n, t, weight, bias, where, wname):
    """weight (out, in) in the ONNX features' order; skylark's is t.order's inverse."""
    _need(len(t.shape) == 1 and weight.shape[1] == t.shape[0],
          f"pattern: {where}: weight {weight.shape} on input {t.shape}")
    if t.order is not None:
        w2 = np.empty_like(weight)
        w2[:, t.order] = weight
        weight = w2
    entry = {"kind": "dense", "in_features": int(weight.shape[1]),
             "out_features": int(weight.shape[0]), "bias": bias is not None}
    params = {"weight": weight, **({"bias": bias} if bias is not None else {})}
    return w.emit(n, entry, [t], (weight.shape[0],), params, weight=wname)


def _gemm(w, n, ins, a, where):
    t = _tensor(ins[0], where)
    _need(not a.get("transA", 0), f"attribute transA=1 of {where}")
    b = ins[1]
    _need(w.const(b) and b.ndim == 2, f"pattern: {where} with a computed weight")
    weight = b if a.get("transB", 0) else b.T
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if alpha != 1:
        weight = weight * np.asarray(alpha, weight.dtype)
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else None
    if bias is not None:
        _need(w.const(bias), f"pattern: {where} with a computed bias")
        _need(bias.size in (1, weight.shape[0]), f"pattern: {where} with a bias of shape "
              f"{list(bias.shape)}")
        bias = bias * np.asarray(beta, bias.dtype) if beta != 1 else bias
        bias = np.broadcast_to(bias.reshape(-1), (weight.shape[0],)).copy()
    return [_dense(w, n, t, np.ascontiguousarray(weight), bias, where, n.input[1])]


def _matmul(w, n, ins, a, where):
    x, b = ins[0], ins[1]
    if isinstance(x, T) and not x.pending and len(x.shape) == 3 and w.const(b) \
            and b.shape[:1] == x.shape[2:] and _zero_one(b):
        return [T(x.node, x.shape, pending=("colsum", x, b))]  # an adaptive pool's columns
    if w.const(x) and isinstance(b, T) and b.pending and b.pending[0] == "colsum" \
            and x.ndim == 2 and x.shape[1] == b.shape[1] and _zero_one(x):
        return [T(b.node, b.shape, pending=("binsum", b.pending[1], x, b.pending[2]))]
    t = _tensor(x, where)
    _need(w.const(b) and b.ndim == 2, f"pattern: {where}: a MatMul skylark reads only as a "
          "Dense (a flat input times a constant matrix)")
    return [_dense(w, n, t, np.ascontiguousarray(b.T), None, where, n.input[1])]


def _zero_one(m) -> bool:
    return m.ndim == 2 and bool(np.all((m == 0) | (m == 1)))


def _adaptive_pool(w, n, t: T, count, where):
    """MatMul by bin matrices, then Div by the bins' cell counts (skylark's own export of
    adaptiveavgpool2d): the pool, where the matrices are torch's bins exactly."""
    from ..kinds.adaptiveavgpool2d import bin_matrix

    src, s_h, s_w_t = t.pending[1], t.pending[2], t.pending[3]
    (c, h, wd), (oh, ow) = src.shape, (s_h.shape[0], s_w_t.shape[1])
    want_h, want_w = bin_matrix(h, oh), bin_matrix(wd, ow)
    counts = np.outer(want_h.sum(axis=1), want_w.sum(axis=1))
    _need(np.array_equal(s_h, want_h) and np.array_equal(s_w_t, want_w.T)
          and np.asarray(count).shape[-2:] == (oh, ow)
          and np.array_equal(np.asarray(count).reshape(oh, ow), counts),
          f"pattern: {where}: MatMul by 0/1 matrices and a Div that are not torch's adaptive "
          "average pool bins")
    return w.emit(n, {"kind": "adaptiveavgpool2d", "output_size": [oh, ow]}, [src],
                  (c, oh, ow))


def _channel_const(t: T, v, where):
    """A constant that is a scalar or per-channel over `t` ((C, 1, 1) in NCHW; (C,) in NHWC,
    before the input's Transpose), as a (C,) float64 vector."""
    v, c = np.asarray(v), t.shape[0]
    nhwc = bool(t.pending) and t.pending[0] == "nhwc_in"
    dims = [d for d in v.shape]
    while dims and dims[0] == 1 and len(dims) > (1 if nhwc else 3):
        dims.pop(0)
    ok = v.size == 1 or (dims == [c] if nhwc else dims in ([c, 1, 1],))
    _need(ok, f"pattern: {where} with a constant of shape {list(v.shape)} (skylark adds or "
          "multiplies per-channel constants only)")
    return np.broadcast_to(v.reshape(-1), (c,)).astype(np.float64)


def _arith(w, n, ins, a, where):
    op = n.op_type
    x, y = ins[0], ins[1]
    if isinstance(x, T) and isinstance(y, T):
        _tensor(x, where), _tensor(y, where)
        _need(op in ("Add", "Mul"), f"{where} of two tensors")
        if op == "Add":
            _need(x.shape == y.shape, f"pattern: {where} of shapes {x.shape}, {y.shape}")
            return [w.emit(n, {"kind": "add"}, [x, y], x.shape)]
        return [_mul(w, n, x, y, where)]
    t, c = (x, y) if isinstance(x, T) else (y, x)
    if op == "Div" and t is x and t.pending and t.pending[0] == "binsum":
        return [_adaptive_pool(w, n, t, c, where)]
    if not (t.pending and t.pending[0] == "nhwc_in"):
        t = _tensor(t, where)
    _need(op != "Div" or t is x, f"pattern: {where} of a constant by a tensor")
    _need(op != "Sub" or t is x, f"pattern: {where} of a constant minus a tensor")
    src = w.entry.get(t.node)
    if op == "Add" and src and src["kind"] == "dense" and not src["bias"] \
            and w.readers_of_node(t.node) == 1 and np.asarray(c).size == t.shape[0]:
        src["bias"] = True
        w.state[f"{t.node}.bias"] = np.asarray(c).reshape(-1).copy()
        return [t]  # MatMul + Add: the Dense's bias
    _need(len(t.shape) == 3, f"pattern: {where} of a flat tensor and a constant")
    v = _channel_const(t, c, where)
    scale, offset = np.ones_like(v), np.zeros_like(v)
    if op == "Mul":
        scale = v
    elif op == "Div":
        scale = 1 / v
    elif op == "Add":
        offset = v
    else:
        offset = -v
    if src and src["kind"] == "rescaling" and w.readers_of_node(t.node) == 1 \
            and op in ("Add", "Sub"):
        src["offset"] = [float(o + f) for o, f in zip(src["offset"], offset, strict=True)]
        return [t]  # Mul + Add: one rescaling
    out = w.emit(n, {"kind": "rescaling", "scale": [float(s) for s in scale],
                     "offset": [float(o) for o in offset]}, [t], t.shape)
    if t.pending:  # still before the input's Transpose to NCHW
        out.pending = t.pending
    return [out]


def _mul(w, n, x, y, where):
    for a_, b_ in ((x, y), (y, x)):
        sig = w.entry.get(b_.node)
        if sig and sig["kind"] == "sigmoid" and sig["inputs"] == [a_.node] \
                and w.readers_of_node(b_.node) == 1 and a_.shape == b_.shape:
            sig["kind"] = "silu"  # x * sigmoid(x)
            return b_
    if len(y.shape) == len(x.shape) and all(g in (1, s) for g, s in zip(y.shape, x.shape,
                                                                          strict=True)):
        return w.emit(n, {"kind": "multiply"}, [x, y], x.shape)
    _need(all(g in (1, s) for g, s in zip(x.shape, y.shape, strict=True)),
          f"pattern: {where} of shapes {x.shape}, {y.shape}")
    return w.emit(n, {"kind": "multiply"}, [y, x], y.shape)


def _concat(w, n, ins, a, where):
    ts = [_tensor(v, where) for v in ins]
    rank = len(ts[0].shape) + 1
    _need(a.get("axis", 1) % rank == 1, f"attribute axis={a.get('axis')} of {where} "
          "(skylark concatenates channels)")
    _need(all(len(t.shape) == 3 and t.shape[1:] == ts[0].shape[1:] for t in ts),
          f"pattern: {where} of shapes {[t.shape for t in ts]}")
    if len(ts) == 1:  # torch.cat([x]) (DenseNet's first layer, legacy exporter)
        return [ts[0]]
    c = sum(t.shape[0] for t in ts)
    return [w.emit(n, {"kind": "concat"}, ts, (c, *ts[0].shape[1:]))]


def _slices(w, n, t, bounds):
    outs = []
    for k, (lo, hi) in enumerate(bounds):
        node = n if len(bounds) == 1 else _Named(n, str(k))
        outs.append(w.emit(node, {"kind": "channelslice", "start": lo, "stop": hi}, [t],
                           (hi - lo, *t.shape[1:])))
    return outs


def _split(w, n, ins, a, where):
    t = _map(ins[0], where)
    _need(a.get("axis", 0) % 4 == 1, f"attribute axis={a.get('axis', 0)} of {where}")
    c = t.shape[0]
    sizes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("split")
    if sizes is None:
        k = len(n.output)
        _need(c % k == 0 or "num_outputs" in a, f"pattern: {where} into {k} of {c}")
        step = -(-c // k)
        sizes = [min(step, c - i * step) for i in range(k)]
    sizes = [int(s) for s in np.asarray(sizes)]
    _need(sum(sizes) == c, f"attribute split={sizes} of {where}")
    starts = np.cumsum([0, *sizes])
    return _slices(w, n, t, list(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True)))


def _slice(w, n, ins, a, where):
    t = _map(ins[0], where)
    starts, ends = ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
    steps = ins[4] if len(ins) > 4 and ins[4] is not None else np.ones(len(starts))
    _need(all(w.const(np.asarray(v)) for v in (starts, ends)), f"pattern: {where} with computed "
          "bounds")
    _need(list(np.asarray(axes) % 4) == [1] and list(np.asarray(steps)) == [1],
          f"pattern: {where} on axes {list(np.asarray(axes))} (skylark slices channels only, "
          "step 1)")
    c = t.shape[0]
    lo, hi = int(np.asarray(starts)[0]), int(np.asarray(ends)[0])
    lo, hi = (lo + c if lo < 0 else lo), (hi + c if hi < 0 else hi)
    lo, hi = max(0, min(lo, c)), max(0, min(hi, c))
    _need(hi > lo, f"pattern: {where} to an empty channel range")
    return _slices(w, n, t, [(lo, hi)])


def _batchnorm(w, n, ins, a, where):
    t = _map(ins[0], where)
    _need(len(n.output) == 1 or (not any(n.output[1:]) and not a.get("training_mode", 0)),
          f"attribute training_mode of {where} (inference BatchNormalization only)")
    _need(all(w.const(v) for v in ins[1:5]), f"pattern: {where} with computed statistics")
    scale, bias, mean, var = ins[1:5]
    m = _f32(a.get("momentum", 0.9))
    entry = {"kind": "batchnorm2d", "num_features": t.shape[0],
             "eps": _f32(a.get("epsilon", 1e-5)), "momentum": round(1 - m, 9)}
    params = {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var}
    return [w.emit(n, entry, [t], t.shape, params, weight=n.input[1])]


OPS = {
    "Identity": _alias, "Relu": _pointwise("relu"), "Sigmoid": _pointwise("sigmoid"),
    "Tanh": _pointwise("tanh"), "HardSwish": _pointwise("hardswish"),
    "HardSigmoid": _hardsigmoid, "LeakyRelu": _leaky, "Clip": _clip, "Softmax": _softmax,
    "Dropout": _dropout, "Conv": _conv, "Pad": _pad, "MaxPool": _maxpool,
    "AveragePool": _avgpool, "GlobalAveragePool": _global_pool, "ReduceMean": _global_pool,
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Transpose": _transpose,
    "Gemm": _gemm,
    "MatMul": _matmul, "Add": _arith, "Sub": _arith, "Mul": _arith, "Div": _arith,
    "Concat": _concat, "Split": _split, "Slice": _slice, "BatchNormalization": _batchnorm,
}
