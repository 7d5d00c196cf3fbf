"""A fuzz case as a plan: the input, the mode, the loss and a list of blocks; and its model config.

    plan = {"input_shape": [2, 5, 7], "batch": 3, "seed": 11, "dtype": "float64",
            "input": "kinks", "mode": "train", "reduction": "mean", "label_smoothing": 0.0,
            "blocks": [{"op": "conv", "out": 4, "kernel": [3, 2], "padding": "same", ...}],
            "head": {"pool": "flatten", "hidden": [5], "act": {"kind": "tanh"}}}
    layers = build_layers(plan)   # [{"kind": "conv2d", "name": "b0.conv", ...}, ...]

A block names what it does, not its channel counts: `build_layers` reads the running shape and
fills in in_channels, in_features and groups (the largest divisor of both channel counts not
above the block's wish), so dropping a block or shrinking a channel count leaves a plan that
still builds wherever skylark can build it. What skylark itself rejects (a kernel larger than
the padded map, a pool padding above half its kernel) raises `Invalid`.
"""

from __future__ import annotations

import math

import numpy as np

from skylark.graph import INPUT
from skylark.models import from_config

from ..spec import describe, shapes

NUM_CLASSES = 10  # what `skylark check` builds its models for


class Invalid(ValueError):
    """A plan that skylark itself cannot build (the generator retries; the shrinker skips it)."""


def _node(name: str, kind: str, inputs=None, **args) -> dict:
    entry = {"kind": kind, "name": name, **args}
    if inputs is not None:
        entry["inputs"] = list(inputs)
    return entry


def _divisor(g: int, *counts: int) -> int:
    """The largest divisor of every count that is at most g (1 at worst)."""
    g = max(1, min(int(g), *counts))
    while any(c % g for c in counts):
        g -= 1
    return g


def _conv(name, block, c, out, inputs=None) -> dict:
    groups = c if block.get("groups") == "depthwise" else block.get("groups", 1)
    return _node(name, "conv2d", inputs, in_channels=c, out_channels=out,
                 kernel_size=block.get("kernel", 1), stride=block.get("stride", 1),
                 padding=block.get("padding", 0), dilation=block.get("dilation", 1),
                 groups=_divisor(groups, c, out), bias=bool(block.get("bias", True)))


def _tail(p: str, block: dict, c: int) -> list[dict]:
    """The optional BatchNorm and activation after a block's main layer."""
    out = [_node(f"{p}.bn", "batchnorm2d", num_features=c)] if block.get("bn") else []
    if block.get("act"):
        out.append(_node(f"{p}.act", **block["act"]))
    return out


def _conv_block(p, b, prev, shape):
    out = b["out"] if b.get("groups") != "depthwise" else shape[0]
    return [_conv(f"{p}.conv", b, shape[0], out, prev and [prev]), *_tail(p, b, out)]


def _maxpool(p, b, prev, shape):
    args = {k: b[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
            if k in b}
    return [_node(f"{p}.pool", "maxpool2d", prev and [prev], **args)]


def _avgpool(p, b, prev, shape):
    args = {k: b[k] for k in ("kernel_size", "stride", "padding", "count_include_pad") if k in b}
    return [_node(f"{p}.pool", "avgpool2d", prev and [prev], **args)]


def _adaptive(p, b, prev, shape):
    return [_node(f"{p}.pool", "adaptiveavgpool2d", prev and [prev],
                  output_size=b["output_size"])]


def _single(kind_of):
    def make(p, b, prev, shape):
        kind, args = kind_of(b, shape)
        return [_node(f"{p}.{kind}", kind, prev and [prev], **args)]
    return make


def _rescaling(b, shape) -> dict:
    """Per channel (the block's constants cycled over the channels) on a map, or the first
    of each for every element."""
    if b.get("per_channel") and len(shape) == 3:
        c = shape[0]
        return {"scale": [b["scale"][i % len(b["scale"])] for i in range(c)],
                "offset": [b["offset"][i % len(b["offset"])] for i in range(c)]}
    return {"scale": b["scale"][0], "offset": b["offset"][0]}


def _act(p, b, prev, shape):
    """An activation, after an affine map (a rescaling node) where the block has `tails`."""
    scale = [_node(f"{p}.tails", "rescaling", prev and [prev], **b["tails"])] \
        if b.get("tails") else []
    return [*scale, _node(f"{p}.{b['act']['kind']}", inputs=None if scale else prev and [prev],
                          **b["act"])]


def _residual(p, b, prev, shape):
    """conv "same" (C -> C, stride 1) [+ BN], added to the block's input, [+ activation]; with
    `act_before_add` the activation ends the branch instead, before the add."""
    c = shape[0]
    body = [_conv(f"{p}.conv", {**b, "padding": "same", "stride": 1}, c, c, prev and [prev])]
    if b.get("bn"):
        body.append(_node(f"{p}.bn", "batchnorm2d", num_features=c))
    act = [_node(f"{p}.act", **b["act"])] if b.get("act") else []
    if b.get("act_before_add"):
        body, act = body + act, []
    body.append(_node(f"{p}.add", "add", [body[-1]["name"], prev or INPUT]))
    return body + act


def _concat(p, b, prev, shape):
    """Branches of "same" convs (and the input itself with `keep`) joined along channels."""
    src, c = prev or INPUT, shape[0]
    branches = [_conv(f"{p}.branch{j}", {**br, "padding": "same", "stride": 1}, c, br["out"],
                      [src]) for j, br in enumerate(b["branches"])]
    names = [br["name"] for br in branches]
    if b.get("keep") or len(names) < 2:
        names.insert(0, src)
    return [*branches, _node(f"{p}.cat", "concat", names)]


# squeeze_to: the gate's shape over a (C, H, W) map, as the pool's output size (None: no pool)
SQUEEZE = {"c": lambda h, w: 1, "h": lambda h, w: [h, 1], "w": lambda h, w: [1, w],
           "spatial": lambda h, w: None}


def _se(p, b, prev, shape):
    """Squeeze-excite: pool to 1x1, 1x1 conv down, activation, 1x1 conv up, gate, multiply.
    `squeeze_to` "h" or "w" pools one axis only (a (C, H, 1) or (C, 1, W) gate); "spatial"
    pools nothing and convs up to one channel (a (1, H, W) gate, broadcast over channels)."""
    src, c = prev or INPUT, shape[0]
    r = max(1, min(int(b.get("squeeze", 1)), c))
    act = [_node(f"{p}.act", **b["act"])] if b.get("act") else []
    size = SQUEEZE[b.get("squeeze_to", "c")](shape[1], shape[2])
    pool = [] if size is None else [_node(f"{p}.squeeze", "adaptiveavgpool2d", [src],
                                          output_size=size)]
    return [*pool, _conv(f"{p}.down", {"kernel": 1}, c, r, None if pool else [src]), *act,
            _conv(f"{p}.up", {"kernel": 1}, r, 1 if size is None else c),
            _node(f"{p}.gate", **b["gate"]), _node(f"{p}.mul", "multiply", [src, f"{p}.gate"])]


def _shuffle(p, b, prev, shape):
    """A channel shuffle, after a 1x1 conv to `out` channels when given (ShuffleNet's grouped
    1x1 conv then shuffle)."""
    c, out = shape[0], []
    if b.get("out"):
        out.append(_conv(f"{p}.conv", {"kernel": 1, "groups": b["groups"]}, c, b["out"],
                         prev and [prev]))
        c, prev = b["out"], None
    return [*out, _node(f"{p}.channelshuffle", "channelshuffle", prev and [prev],
                        groups=_divisor(b["groups"], c))]


def _split(p, b, prev, shape):
    """ShuffleNet's unit: split the channels, a 1x1 conv on the second half, concat, shuffle."""
    src, c = prev or INPUT, shape[0]
    if c < 2:
        raise Invalid(f"split needs 2 or more channels. Received: {c}")
    half = c // 2
    out = [_node(f"{p}.left", "channelslice", [src], start=0, stop=half),
           _node(f"{p}.right", "channelslice", [src], start=half, stop=c),
           _conv(f"{p}.conv", {"kernel": 1, "bias": b.get("bias", True)}, c - half, c - half)]
    out += [_node(f"{p}.act", **b["act"])] if b.get("act") else []
    out.append(_node(f"{p}.cat", "concat", [f"{p}.left", out[-1]["name"]]))
    if b.get("shuffle"):
        out.append(_node(f"{p}.shuffle", "channelshuffle", groups=2))
    return out


BLOCKS = {
    "conv": _conv_block, "maxpool": _maxpool, "avgpool": _avgpool, "adaptive": _adaptive,
    "act": _act,
    "bn": _single(lambda b, s: ("batchnorm2d", {"num_features": s[0]})),
    "dropout": _single(lambda b, s: ("dropout", {"p": b["p"]})),
    "shuffle": _shuffle,
    "identity": _single(lambda b, s: ("identity", {})),
    "zeropad": _single(lambda b, s: ("zeropad2d", {"padding": b["padding"]})),
    "stochasticdepth": _single(lambda b, s: ("stochasticdepth", {"p": b["p"],
                                                                 "mode": b["mode"]})),
    "rescaling": _single(lambda b, s: ("rescaling", _rescaling(b, s))),
    "residual": _residual, "concat": _concat, "se": _se, "split": _split,
}


def _head(head: dict, prev: str | None, shape) -> list[dict]:
    """Pool (flatten, global average, or adaptive average then flatten), hidden Dense layers
    with an activation and dropout, then Dense to NUM_CLASSES logits."""
    out = []
    if head["pool"] == "gap":
        out.append(_node("head.pool", "globalavgpool2d", prev and [prev]))
        features = shape[0]
    else:
        if head["pool"] == "adaptive":
            out.append(_node("head.pool", "adaptiveavgpool2d", prev and [prev],
                             output_size=head["output_size"]))
            shape = (shape[0], *_pair(head["output_size"]))
        out.append(_node("head.flatten", "flatten", None if out else prev and [prev]))
        features = math.prod(shape)
    for j, n in enumerate([*head.get("hidden", []), NUM_CLASSES]):
        out.append(_node(f"head.fc{j}", "dense", in_features=features, out_features=n,
                         bias=bool(head.get("bias", True))))
        features = n
        if j < len(head.get("hidden", [])):
            out += [_node(f"head.tails{j}", "rescaling", **head["tails"])] \
                if head.get("act") and head.get("tails") else []
            out += [_node(f"head.act{j}", **head["act"])] if head.get("act") else []
            out += [_node(f"head.drop{j}", "dropout", p=head["dropout"])] \
                if head.get("dropout") else []
    return out


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def out_shape(layers: list[dict], input_shape, batch: int = 1,
              training: bool = False) -> tuple[int, ...]:
    """The per-sample shape skylark's forward gives; Invalid where skylark rejects the model
    with an error of its own (one line naming the received value: "Received: ...").

    An exception without that, from a model whose layers declare a valid output shape
    (output_shape, which the references' geometry uses), is a crash, not a model to redraw:
    the declared shape is returned, so the case is kept and the oracle reports the crash."""
    net = None
    try:
        net = from_config(layers)
        # a probe of shapes, not values: chained activation tails (GELU, SiLU at scales up to
        # 16) can overflow float32 here, and a warning made an error must not crash the draw
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            y = net.train(training).forward(np.zeros((batch, *input_shape), np.float32))
    except (ValueError, TypeError, IndexError, ZeroDivisionError) as e:
        if net is None or "Received" in str(e):
            raise Invalid(str(e)) from None
        try:
            return tuple(int(d) for d in shapes(describe(net), input_shape)[-1])
        except ValueError:
            raise Invalid(str(e)) from None
    return tuple(int(d) for d in y.shape[1:])


def build_layers(plan: dict) -> list[dict]:
    """The model config (skylark.models.from_config's list) of `plan`, every shape checked
    by skylark; Invalid when a block or the head does not fit. The first node reads the
    input; a node without "inputs" reads the node before it."""
    input_shape = tuple(plan["input_shape"])
    layers: list[dict] = []
    shape, prev = input_shape, None
    for i, block in enumerate(plan["blocks"]):
        if len(shape) != 3:
            raise Invalid(f"block {i} needs a (C, H, W) map. Received: shape {shape}")
        try:
            layers += BLOCKS[block["op"]](f"b{i}", block, prev, shape)
        except (TypeError, KeyError) as e:  # a block the shrinker left incomplete
            raise Invalid(f"block {i} ({block.get('op')}): {e!r}") from None
        shape, prev = out_shape(layers, input_shape), layers[-1]["name"]
    layers += _head(plan["head"], prev, shape)
    final = out_shape(layers, input_shape)
    if final != (NUM_CLASSES,):
        raise Invalid(f"the model must end in {NUM_CLASSES} logits. Received: {final}")
    if plan.get("mode") == "train":  # BatchNorm needs two values per channel in training
        out_shape(layers, input_shape, batch=plan["batch"], training=True)
    return _drop_default_inputs(layers)


def _drop_default_inputs(layers: list[dict]) -> list[dict]:
    """"inputs" only where a node reads something other than the node before it."""
    out = []
    for i, entry in enumerate(layers):
        entry = dict(entry)
        default = [layers[i - 1]["name"]] if i else [INPUT]
        if entry.get("inputs") in (default, [None]):
            entry.pop("inputs")
        out.append(entry)
    return out


CASE_FIELDS = ("input_shape", "batch", "seed", "dtype", "input", "mode", "reduction",
               "label_smoothing")
