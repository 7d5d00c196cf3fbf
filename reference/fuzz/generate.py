"""A random valid plan per (seed, case index): the same index gives the same case everywhere.

    plan = generate(seed=0, index=41)     # reference.fuzz.plan's dict; builds by construction

Each case draws from `np.random.default_rng((seed, index))` alone, so a campaign is
reproducible from its seed whichever worker (process or cluster node) runs which index, and
case i of a run is case i of any other run with that seed.

What is drawn: input shape (1-4 channels, 1-12 rows and columns, non-square), batch 1-4, both
dtypes, the random, tie-heavy and kink-heavy inputs, training (BatchNorm on batch statistics,
dropout with the check's supplied masks) or evaluation mode, the loss's reduction and label
smoothing, 0-5 blocks (convolutions with every stride, dilation, padding incl. "same" and
"valid", groups and depthwise; max pools with padding, dilation and ceil_mode; average pools
with count_include_pad and "same"; adaptive pools; every activation; BatchNorm; dropout;
channel shuffles; residual adds; concatenations; squeeze-excite gates; channel splits) and a
head; and, in a quarter of the cases, skylark's row and channel blocks shrunk to a few bytes
(reference.fuzz.knobs), so its blocked convolution and pooling paths run; and in half the
kink-heavy cases an activation first, on the input's exact kinks; and in 40% of the cases one
of the kinds imported models bring (zero padding, stochastic depth, rescaling) put in at a
random place; and each activation block and the head's hidden activation, with TAILS_P, made a
smooth one behind an affine map that reaches its tails (`tails`). A block that does not fit
the running shape is drawn again (up to 8 times, then left out), so every plan builds in
skylark. The knobs, the probe, the imported kinds and the tails each draw from a stream of
their own, so adding them left every other draw of a case, and every case of an earlier
campaign without an activation block or hidden activation, as it was.
"""

from __future__ import annotations

import numpy as np

from .data import draw_idx
from .plan import Invalid, build_layers
from .train import draw_train

# relu four times over: the kink every CNN has
ACTS = ("relu", "relu", "relu", "relu", "leaky_relu", "tanh", "sigmoid", "relu6", "hardswish",
        "hardsigmoid", "silu", "gelu", "identity")
FLAT_ACTS = (*ACTS, "softmax")  # softmax only on flat features, as the frameworks define it
OPS = {"conv": 30, "maxpool": 10, "avgpool": 8, "adaptive": 4, "act": 10, "bn": 6,
       "dropout": 5, "shuffle": 4, "identity": 2, "residual": 8, "concat": 6, "se": 5,
       "split": 4}
RETRIES = 8
IMPORTED = ("zeropad", "stochasticdepth", "rescaling")  # the kinds imported models bring
# the activations with tails (tanh-GELU's too), and how often an activation site gets them
SMOOTH = ({"kind": "gelu", "approximate": "none"}, {"kind": "gelu", "approximate": "tanh"},
          {"kind": "sigmoid"}, {"kind": "tanh"}, {"kind": "silu"})
TAILS_P = 0.4


def _pick(rng, options, weights=None):
    p = None if weights is None else np.asarray(weights, float) / sum(weights)
    return options[int(rng.choice(len(options), p=p))]


def _int(rng, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _pair_or_int(rng, lo: int, hi: int, square: float = 0.5):
    if rng.random() < square:
        return _int(rng, lo, hi)
    return [_int(rng, lo, hi), _int(rng, lo, hi)]


def draw_act(rng, flat: bool = False) -> dict:
    kind = _pick(rng, FLAT_ACTS if flat else ACTS)
    if kind == "leaky_relu":
        return {"kind": kind, "negative_slope": _pick(rng, [0.01, 0.2, 0.5])}
    if kind == "gelu":
        return {"kind": kind, "approximate": _pick(rng, ["none", "tanh"])}
    return {"kind": kind}


def _conv(rng) -> dict:
    padding = _pick(rng, ["zero", "int", "pair", "same", "valid"], [2, 3, 2, 3, 1])
    return {"op": "conv", "out": _int(rng, 1, 6), "kernel": _pair_or_int(rng, 1, 4),
            "stride": _pick(rng, [1, 2, 3, [1, 2], [2, 1]], [6, 2, 1, 1, 1]),
            "dilation": _pick(rng, [1, 2, [1, 2], [3, 1]], [7, 2, 1, 1]),
            "padding": {"zero": 0, "int": _int(rng, 1, 2), "pair": [_int(rng, 0, 2),
                        _int(rng, 0, 2)], "same": "same", "valid": "valid"}[padding],
            "groups": _pick(rng, [1, 2, 3, "depthwise"], [6, 2, 1, 2]),
            "bias": bool(rng.random() < 0.6), "bn": bool(rng.random() < 0.3),
            "act": draw_act(rng) if rng.random() < 0.6 else None}


def _maxpool(rng) -> dict:
    k = _pair_or_int(rng, 1, 3)
    b = {"op": "maxpool", "kernel_size": k}
    if rng.random() < 0.5:
        b["stride"] = _pair_or_int(rng, 1, 3)
    if rng.random() < 0.3:
        b["dilation"] = _pair_or_int(rng, 1, 2)
    if rng.random() < 0.3:
        b["padding"] = "same" if rng.random() < 0.3 else min(1, int(min(np.ravel(k))) // 2)
    if b.get("padding") != "same" and rng.random() < 0.3:
        b["ceil_mode"] = True
    return b


def _avgpool(rng) -> dict:
    k = _pair_or_int(rng, 1, 3)
    b = {"op": "avgpool", "kernel_size": k}
    if rng.random() < 0.5:
        b["stride"] = _pair_or_int(rng, 1, 3)
    if rng.random() < 0.4:
        b["padding"] = "same" if rng.random() < 0.4 else int(min(np.ravel(k))) // 2
        if b["padding"] != "same" and rng.random() < 0.5:
            b["count_include_pad"] = bool(rng.random() < 0.5)
    return b


def _directions(rng, block: dict) -> dict:
    """Options drawn from the case's knob stream (so every other draw of the case stays as it
    was), each for a bug class plain draws rarely reach: a residual whose activation comes
    before the add (Add hands one dy to both inputs: a backward that writes into its dy corrupts
    the skip's gradient); squeeze-excite gates broadcast over other axes than (C, 1, 1); and a
    shuffle after a 1x1 conv to 6, 8 or 12 channels, where shuffling by g is not its own
    inverse (g != C / g; the 1-4 channels drawn elsewhere make most shuffles involutions)."""
    op = block["op"]
    if op == "residual" and block.get("act") and rng.random() < 0.5:
        return {**block, "act_before_add": True}
    if op == "se" and rng.random() < 0.6:
        return {**block, "squeeze_to": _pick(rng, ["h", "w", "spatial"])}
    if op == "shuffle" and rng.random() < 0.6:
        return {**block, "groups": _int(rng, 2, 4), "out": _pick(rng, [6, 8, 12])}
    return block


def draw_block(rng, knobs=None) -> dict:
    """A block from `rng`, with `_directions` from `knobs` when given."""
    block = _draw_block(rng)
    return block if knobs is None else _directions(knobs, block)


def _draw_block(rng) -> dict:
    op = _pick(rng, list(OPS), list(OPS.values()))
    simple = {
        # up to 8: larger than the map too, as vgg's and alexnet's 7x7 heads on small inputs
        "adaptive": lambda: {"output_size": _pair_or_int(rng, 1, 8)},
        "act": lambda: {"act": draw_act(rng)},
        "bn": dict, "identity": dict,
        "dropout": lambda: {"p": _pick(rng, [0.1, 0.25, 0.5])},
        "shuffle": lambda: {"groups": _int(rng, 1, 3)},
        "residual": lambda: {"kernel": _pair_or_int(rng, 1, 3),
                             "dilation": _pick(rng, [1, 1, 2]),
                             "groups": _pick(rng, [1, 1, "depthwise"]),
                             "bias": bool(rng.random() < 0.5), "bn": bool(rng.random() < 0.4),
                             "act": draw_act(rng) if rng.random() < 0.6 else None},
        "concat": lambda: {"branches": [{"out": _int(rng, 1, 4),
                                         "kernel": _pair_or_int(rng, 1, 3)}
                                        for _ in range(_int(rng, 1, 2))],
                           "keep": bool(rng.random() < 0.4)},
        "se": lambda: {"squeeze": _int(rng, 1, 3), "act": draw_act(rng),
                       "gate": {"kind": _pick(rng, ["sigmoid", "hardsigmoid"])}},
        "split": lambda: {"act": draw_act(rng) if rng.random() < 0.6 else None,
                          "shuffle": bool(rng.random() < 0.6)},
    }
    if op == "conv":
        return _conv(rng)
    if op == "maxpool":
        return _maxpool(rng)
    if op == "avgpool":
        return _avgpool(rng)
    return {"op": op, **simple[op]()}


def draw_imported(rng) -> dict:
    """A block of one of the kinds imported models bring. Rescaling's constants: 4 of each,
    used per channel (cycled) or the first one for all."""
    op = _pick(rng, IMPORTED)
    if op == "zeropad":
        return {"op": op, "padding": _int(rng, 1, 2) if rng.random() < 0.3 else
                [_int(rng, 0, 2) for _ in range(4)]}
    if op == "stochasticdepth":
        return {"op": op, "p": _pick(rng, [0.2, 0.5]), "mode": _pick(rng, ["row", "batch"],
                                                                     [3, 1])}
    return {"op": op, "scale": [round(float(rng.uniform(-2, 2)), 3) for _ in range(4)],
            "offset": [round(float(rng.uniform(-1, 1)), 3) for _ in range(4)],
            "per_channel": bool(rng.random() < 0.6)}


def draw_head(rng) -> dict:
    pool = _pick(rng, ["flatten", "gap", "adaptive"], [5, 3, 2])
    head = {"pool": pool, "hidden": [_int(rng, 1, 8) for _ in range(_int(rng, 0, 2))],
            "bias": bool(rng.random() < 0.7)}
    if pool == "adaptive":
        head["output_size"] = _pair_or_int(rng, 1, 7)
    if head["hidden"]:
        head["act"] = draw_act(rng, flat=True) if rng.random() < 0.8 else None
        head["dropout"] = _pick(rng, [0, 0.2, 0.5], [2, 1, 1])
    return head


def draw_case(rng) -> dict:
    """The plan's fields other than its blocks and head."""
    return {
        "input_shape": [_int(rng, 1, 4), _int(rng, 1, 12), _int(rng, 1, 12)],
        "batch": _int(rng, 1, 4), "seed": _int(rng, 0, 2**31 - 1),
        "dtype": _pick(rng, ["float64", "float32"]),
        "input": _pick(rng, ["random", "ties", "kinks"], [4, 2, 4]),
        "mode": _pick(rng, ["train", "eval"], [7, 3]),
        "reduction": _pick(rng, ["mean", "sum"], [4, 1]),
        "label_smoothing": _pick(rng, [0.0, 0.1, 0.25], [6, 2, 2]),
    }


def generate(seed: int, index: int) -> dict:
    """Case `index` of the campaign seeded `seed`: a plan that skylark builds."""
    rng = np.random.default_rng((int(seed), int(index)))
    plan = {**draw_case(rng), "blocks": [], "head": {"pool": "flatten", "hidden": []}}
    # a stream of its own, so that adding a knob leaves every other draw of the case alone
    knobs = np.random.default_rng((int(seed), int(index), 1))
    plan["small_blocks"] = bool(knobs.random() < 0.25)
    probe = plan["input"] == "kinks" and knobs.random() < 0.5
    for _ in range(_int(rng, 0, 5)):
        for _ in range(RETRIES):
            candidate = {**plan, "blocks": [*plan["blocks"], draw_block(rng, knobs)]}
            if _builds(candidate, head=False):
                plan = candidate
                break
    for _ in range(RETRIES):
        candidate = {**plan, "head": draw_head(rng)}
        if _builds(candidate):
            plan = candidate
            break
    imported = np.random.default_rng((int(seed), int(index), 2))
    if imported.random() < 0.4:
        block, at = draw_imported(imported), _int(imported, 0, len(plan["blocks"]))
        candidate = {**plan, "blocks": [*plan["blocks"][:at], block, *plan["blocks"][at:]]}
        if _builds(candidate):
            plan = candidate
    plan = tails(np.random.default_rng((int(seed), int(index), 3)), plan)
    if probe:  # an activation straight on the input's exact kinks (it keeps the shape)
        plan = {**plan, "blocks": [{"op": "act", "act": draw_act(knobs)}, *plan["blocks"]]}
    # the data and training oracles' draws, each from a stream of its own (reference.fuzz.data,
    # reference.fuzz.train): the network above is the one drawn before they existed
    plan["idx"] = draw_idx(seed, index)
    train = draw_train(seed, index)
    if train is not None:
        plan["train"] = train
    return plan


def _tails(rng) -> dict:
    """A smooth activation and the affine map before it (reference.fuzz.plan: a rescaling
    node) that puts its inputs around +-3 to +-9 with a spread of 2 to 8 per unit of input."""
    return {"act": dict(_pick(rng, SMOOTH)),
            "tails": {"scale": round(float(rng.choice([-1, 1]) * rng.uniform(4, 16)), 3),
                      "offset": round(float(rng.choice([-1, 1]) * rng.uniform(3, 9)), 3)}}


def tails(rng, plan: dict) -> dict:
    """Each activation block and the head's hidden activation (not softmax), with TAILS_P,
    turned into a smooth one with an affine map before it, from `rng` alone (a stream of its
    own): the tails where sigmoid and tanh saturate, exp(-x) grows and GELU is x * Phi(x) with
    Phi tiny, which inputs within +-0.5 through initialised weights almost never reach (an erfc
    tail coefficient off by 10x moves GELU by under the float64 bar; reference.fuzz.ulp)."""
    blocks = [{**b, **_tails(rng)} if b["op"] == "act" and rng.random() < TAILS_P else b
              for b in plan["blocks"]]
    head = plan["head"]
    if (head.get("act") or {}).get("kind", "softmax") != "softmax" and rng.random() < TAILS_P:
        head = {**head, **_tails(rng)}
    return {**plan, "blocks": blocks, "head": head}


def _builds(plan: dict, head: bool = True) -> bool:
    try:
        build_layers(plan if head else {**plan, "head": {"pool": "flatten", "hidden": []}})
    except Invalid:
        return False
    return True
