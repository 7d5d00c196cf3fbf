"""A JSON-able architecture spec: what every reference framework builds its copy of a model from.

    spec = describe(model)            # [{"kind": "conv2d", "in_channels": 1, ...}, {"kind": ...}]
    model2 = build(spec, "float64")   # the same architecture as a skylark model (fresh init)
    shapes(spec, (1, 28, 28))         # [(8, 26, 26), (8, 13, 13), (1352,), (10,)]
    outs = run_graph(spec, geo, x, lambda s, g, h: ...)   # how every framework walks a graph

An entry is a layer's `config()` (its constructor arguments by torch's names) plus its "kind";
the kinds, their fields and their framework builders are in reference.kinds. Pairs are [h, w]
lists and padding is "valid", "same" or [ph, pw].

A graph (skylark.Graph) is the same list with two optional fields per entry, exactly as
skylark.models.to_config writes them: "name" (default: the entry's position, "0", "1", ...)
and "inputs" (node names or "input"; default: the entry before, or "input" for the first).
Entries are in running order; the last is the output. Parameters are "{name}.weight", ...
"""

from __future__ import annotations

from typing import NamedTuple

import skylark as sk
from skylark.models import check_order, to_config

from .kinds import KINDS, kind_of

INPUT = sk.INPUT


class Geometry(NamedTuple):
    """Node `index` (named `name`) of a spec run on one per-sample input shape."""

    index: int
    in_shape: tuple[int, ...]  # (C, H, W) or (F,): the first input's
    out_shape: tuple[int, ...]
    pads: tuple[int, int, int, int] | None  # (top, bottom, left, right) for windowed layers
    flat_source: tuple[int, int, int] | None  # the map whose flatten order a flat output has
    in_flat_source: tuple[int, int, int] | None  # the same for this layer's (first) input
    name: str = ""  # the node's name: its parameters are "{name}.weight", ...
    inputs: tuple[int, ...] = (-1,)  # the nodes it reads, by index; -1 is the model's input
    in_shapes: tuple = ()  # every input's shape, in order
    in_flat_sources: tuple = ()  # every input's flat source, in order


def describe(model: sk.Graph) -> list[dict]:
    """The nodes of `model` as plain dicts (JSON-able): each layer's kind and config, with
    "name" and "inputs" where they are not a Sequential's; ValueError on a layer we cannot
    mirror."""
    return [{**kind_of(node.layer, i).describe(node.layer),
             **{k: v for k, v in entry.items() if k in ("name", "inputs")}}
            for i, (node, entry) in enumerate(zip(model.nodes, to_config(model), strict=True))]


def node_names(spec: list[dict]) -> list[str]:
    """Every node's name, in order ("0", "1", ... where the spec names none)."""
    return [s.get("name", str(i)) if isinstance(s, dict) else str(i)
            for i, s in enumerate(spec)]


def node_of(key: str) -> str:
    """The node a state or gradient name belongs to: "layer1.0.conv1.weight" -> "layer1.0.conv1"
    (parameter and buffer names have no dot of their own)."""
    return key.rsplit(".", 1)[0]


def run_graph(spec: list[dict], geo: list[Geometry], x, apply) -> list:
    """Every node's output, in order: `apply(s, g, h)` computes node g from `h`, its input
    (a list of them for a kind that takes several); -1 in g.inputs is `x`."""
    outs: list = []
    for s, g in zip(spec, geo, strict=True):
        hs = [x if j < 0 else outs[j] for j in g.inputs]
        outs.append(apply(s, g, hs if KINDS[s["kind"]].multi_input else hs[0]))
    return outs


# Kinds that carry a per-channel constant added to their input on to their output, still a
# per-channel constant (a 1x1 unpadded conv too: it maps the constant c to W c).
_SHIFT_TRANSPARENT = ("add", "concat", "channelslice", "channelshuffle", "identity",
                      "rescaling")


def loss_invariant(spec: list[dict]) -> list[str]:
    """The state a training-mode loss does not depend on: the shift (a conv's or dense's bias,
    a BatchNorm's beta) of every node whose output reaches the loss only through a training-mode
    BatchNorm, passing on the way only through kinds that keep a per-channel constant constant
    (_SHIFT_TRANSPARENT, 1x1 unpadded convs); and the running means of those BatchNorms, which
    average the shift in. BatchNorm subtracts the batch mean, which the shift moves by exactly
    itself: a bias before BatchNorm (VGG-BN), the beta of a linear bottleneck whose stream only
    reaches 1x1 convs and BatchNorms (MobileNetV2, EfficientNet). Their gradient is 0 in exact
    arithmetic and rounding noise in practice, which Adam and RMSprop divide by ~eps: a step of
    up to lr * noise / eps, different in every framework, on state the loss ignores (section 10
    of the design doc)."""
    names = node_names(spec)
    kinds = dict(zip(names, spec, strict=True))
    readers: dict[str, list[str]] = {}
    for n, node in zip(names, build(spec).nodes, strict=True):
        for r in node.inputs:
            readers.setdefault(r, []).append(n)
    absorbers: dict[str, set[str] | None] = {}  # node -> the BatchNorms that absorb its shift
    for n in reversed(names):  # readers come later in a spec: decided before their inputs
        found: set[str] | None = set()
        for r in readers.get(n, []):
            if kinds[r]["kind"] == "batchnorm2d":
                found.add(r)
            elif _shift_transparent(kinds[r]) and absorbers.get(r):
                found |= absorbers[r]
            else:
                found = None  # one reader the shift reaches the loss through
                break
        absorbers[n] = found or None  # the last node (no reader) feeds the loss itself
    out = []
    for n in names:
        s = kinds[n]
        shifts = (s["kind"] in ("conv2d", "dense") and s.get("bias", True)) \
            or s["kind"] == "batchnorm2d"
        if shifts and absorbers[n]:
            out.append(f"{n}.bias")
            out += [f"{m}.running_mean" for m in sorted(absorbers[n])
                    if f"{m}.running_mean" not in out]
    return out


def _shift_transparent(s: dict) -> bool:
    if s["kind"] != "conv2d":
        return s["kind"] in _SHIFT_TRANSPARENT
    kernel, padding = s.get("kernel_size"), s.get("padding", 0)
    kernel = [kernel] * 2 if isinstance(kernel, int) else list(kernel)
    pads = [padding] if isinstance(padding, int) else padding  # "same" pads a 1x1 by 0
    return kernel == [1, 1] and (isinstance(pads, str) or not any(pads))


def _kind(s, i: int):
    kind = s.get("kind") if isinstance(s, dict) else None
    if kind not in KINDS:
        raise ValueError(f"spec layer {i}: kind must be one of {tuple(KINDS)}. Received: {s!r}")
    return KINDS[kind]


def build(spec: list[dict], dtype="float32") -> sk.Graph:
    """A skylark model with the architecture of `spec` (torch-default init, seed i): a
    Sequential when the spec names no node and no input, else a Graph."""
    layers = []
    for i, s in enumerate(spec):
        try:
            cfg = {k: v for k, v in s.items() if k not in ("name", "inputs")}
            layers.append(_kind(s, i).build(cfg, dtype, seed=i))
        except TypeError as e:  # a missing or unknown field
            raise ValueError(f"spec layer {i} ({s.get('kind')}): {e}. Received: {s!r}") from None
    if not any("name" in s or "inputs" in s for s in spec):
        return sk.Sequential(*layers)
    check_order(spec, node_names(spec))  # a cycle, or a node listed before what it reads
    net = sk.Graph()
    for name, s, layer in zip(node_names(spec), spec, layers, strict=True):
        net.add(name, layer, s.get("inputs"))
    return net.check()


def geometry(spec: list[dict], input_shape) -> list[Geometry]:
    """Every node's Geometry for a per-sample input (C, H, W), validating the graph the way
    skylark's forward would (ranks, channels, features, sizes that fit, the shapes an Add or a
    Concat joins); a ValueError names the node."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape is (C, H, W). Received: input_shape={input_shape!r}")
    model, names = build(spec), node_names(spec)
    where = {n: i for i, n in enumerate(names)}
    out: list[Geometry] = []
    for i, (s, node) in enumerate(zip(spec, model.nodes, strict=True)):
        kind, layer = KINDS[s["kind"]], node.layer
        idx = tuple(-1 if r == INPUT else where[r] for r in node.inputs)
        shapes_in = tuple(input_shape if j < 0 else out[j].out_shape for j in idx)
        srcs = tuple(None if j < 0 else out[j].flat_source for j in idx)
        what = f"spec layer {i}" if names[i] == str(i) else f"spec node {names[i]!r}"
        try:
            if kind.multi_input:
                kind.validate_inputs(s, shapes_in, srcs)
                out_shape = tuple(int(d) for d in layer.output_shape(shapes_in))
                new_src = kind.merged_flat_source(shapes_in, out_shape, srcs)
            else:
                kind.validate(s, shapes_in[0])
                out_shape = tuple(int(d) for d in layer.output_shape(shapes_in[0]))
                new_src = kind.flat_source(shapes_in[0], out_shape, srcs[0])
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
        hw = shapes_in[0][1:]
        pads = tuple(layer.pads(hw)) if hasattr(layer, "pads") else None
        if s.get("padding") == "same":  # the reference's own statement of the rule, so a
            pads = same_pads(s, hw)  # wrong split in skylark's shows as a FAIL
        elif s["kind"] == "zeropad2d":  # likewise torch's documented order of its four sides
            pads = zeropad_pads(s["padding"])
        out.append(Geometry(i, shapes_in[0], out_shape, pads, new_src, srcs[0], names[i], idx,
                            shapes_in, srcs))
    return out


def zeropad_pads(padding) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of torch's `nn.ZeroPad2d(padding)`, from torch's
    documentation rather than skylark's layer: an int pads all four sides, a 4-sequence is
    (left, right, top, bottom), W's pair first."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    left, right, top, bottom = padding
    return top, bottom, left, right


def same_pads(s: dict, hw) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of TF's padding="SAME" for layer `s` on a map of size `hw`,
    written here from TF's documentation rather than taken from skylark: the output is
    ceil(n / stride), the padding is what the (dilated) window needs to produce it, and an odd
    total puts the extra pixel after (bottom, right)."""
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    pads = []
    for n, k, st, d in zip(hw, pair(s["kernel_size"]), pair(s["stride"]),
                           pair(s.get("dilation", 1)), strict=True):
        total = max((-(-n // st) - 1) * st + d * (k - 1) + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


def shapes(spec: list[dict], input_shape) -> list[tuple[int, ...]]:
    """Per-sample output shape of every layer for an input (C, H, W): (C, H, W) or (F,)."""
    return [g.out_shape for g in geometry(spec, input_shape)]


def param_shapes(spec: list[dict]) -> dict[str, tuple[int, ...]]:
    """Skylark parameter names -> shapes (OIHW conv weights, (out, in) dense weights)."""
    return {k: v.shape for k, v in build(spec).params().items()}


def state_shapes(spec: list[dict]) -> dict[str, tuple[int, ...]]:
    """Parameters and buffers (BatchNorm running statistics): names -> shapes, layer by layer."""
    return {k: v.shape for k, v in build(spec).state().items()}


def buffer_names(spec: list[dict]) -> list[str]:
    """The buffers' names ("3.running_mean", ...), in state order."""
    return list(build(spec).buffers())


__all__ = ["INPUT", "Geometry", "buffer_names", "build", "describe", "geometry", "node_names",
           "node_of", "param_shapes", "run_graph", "shapes", "state_shapes"]
