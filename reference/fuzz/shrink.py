"""Shrinking: the smallest plan that still fails the same way.

    small, tries = shrink(plan, "torch FAIL loss: conv2d.weight gradient", still_fails)

Greedy, as a delta-debugger does: propose simpler plans in order (drop a block, drop a hidden
Dense, batch 1, halve the channels and the spatial size, simpler options: stride, dilation,
padding, groups, ceil_mode, BatchNorm, activation, dropout, label smoothing, the sum reduction,
training mode), keep the first that still builds in skylark and still fails with the same
signature (reference.fuzz.signature: framework, pass and layer kind of the first diverging
tensor), and start over from it; stop when no proposal is kept or after `max_tries` runs.
The oracle is run on the failing framework only.

Why not Hypothesis' shrinker: it shrinks the random choices behind a case, so a smaller choice
sequence can regenerate a different network and wander to another bug; these moves change one
thing of the network at a time and keep shapes valid by construction (plan.build_layers).
"""

from __future__ import annotations

import copy
import json

from .plan import Invalid, build_layers


def _set(plan: dict, path: tuple, value) -> dict:
    new = copy.deepcopy(plan)
    target = new
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return new


def _block_moves(plan: dict, i: int, b: dict):
    """Simpler versions of block i: each option at its plainest, one at a time."""
    plain = {"stride": 1, "dilation": 1, "padding": 0, "groups": 1, "ceil_mode": False,
             "bn": False, "act": None, "bias": False, "count_include_pad": None, "keep": False,
             "shuffle": False, "squeeze": 1, "squeeze_to": "c", "act_before_add": False,
             "tails": None}
    for key, value in plain.items():
        if key in b and b[key] != value:
            yield _set(plan, ("blocks", i, key), value)
    for key in ("out", "kernel", "kernel_size", "output_size"):
        if key in b:
            smaller = _smaller(b[key])
            if smaller is not None:
                yield _set(plan, ("blocks", i, key), smaller)
    if b["op"] == "concat" and len(b["branches"]) > 1:
        yield _set(plan, ("blocks", i, "branches"), b["branches"][:1])
    for j, br in enumerate(b.get("branches", [])):
        for key in ("out", "kernel"):
            smaller = _smaller(br[key])
            if smaller is not None:
                yield _set(plan, ("blocks", i, "branches", j, key), smaller)


def _smaller(v):
    """1 where an int or a pair has anything above 1, else None."""
    return 1 if max(v if isinstance(v, list) else [v]) > 1 else None


def proposals(plan: dict):
    """Simpler plans, roughly biggest win first."""
    if plan.get("train"):  # first: a failure that is not the training oracle's runs faster
        yield {k: v for k, v in plan.items() if k != "train"}
    for i in range(len(plan["blocks"])):
        yield {**plan, "blocks": plan["blocks"][:i] + plan["blocks"][i + 1:]}
    head = plan["head"]
    if head.get("hidden"):
        yield _set(plan, ("head", "hidden"), head["hidden"][:-1])
    if head["pool"] != "flatten":
        yield _set(plan, ("head", "pool"), "flatten")
    if plan["batch"] > 1:
        yield {**plan, "batch": 1}
        yield {**plan, "batch": plan["batch"] - 1}
    c, h, w = plan["input_shape"]
    for shape in ([1, h, w], [c, max(1, h // 2), w], [c, h, max(1, w // 2)], [c, h - 1, w],
                  [c, h, w - 1]):
        if shape != [c, h, w] and min(shape) >= 1:
            yield {**plan, "input_shape": shape}
    for i, b in enumerate(plan["blocks"]):
        yield from _block_moves(plan, i, b)
        if b.get("out", 1) > 1:
            yield _set(plan, ("blocks", i, "out"), b["out"] - 1)
    for j, n in enumerate(head.get("hidden", [])):
        if n > 1:
            yield _set(plan, ("head", "hidden", j), 1)
    for key, value in (("act", None), ("tails", None), ("dropout", 0), ("bias", False)):
        if head.get(key) not in (None, value):
            yield _set(plan, ("head", key), value)
    for key, value in (("label_smoothing", 0.0), ("reduction", "mean"), ("mode", "eval"),
                       ("input", "random"), ("small_blocks", False)):
        if plan.get(key, value) != value:
            yield {**plan, key: value}
    yield from _train_moves(plan)


# the training oracle's plainest run (reference.fuzz.train): what a repro keeps only if needed
TRAIN_PLAIN = {"clip": None, "schedule": {"name": "constant"}}


def _train_moves(plan: dict):
    """plan["train"] simpler (where the failure needs it at all: proposals first drops it):
    no clipping, a constant rate, 3 steps, each on its own (the optimizer stays: a failure is
    usually its)."""
    t = plan.get("train")
    if not t:
        return
    for key, value in TRAIN_PLAIN.items():
        if t[key] != value:
            yield _set(plan, ("train", key), value)
    if t["steps"] > 3:
        yield _set(plan, ("train",), {**t, "steps": 3, "resume_at": min(t["resume_at"], 2)})


def _train_size(plan: dict) -> int:
    """How far plan["train"] is from none: 1 for having one, plus its options off
    TRAIN_PLAIN and its steps over 3."""
    t = plan.get("train")
    if not t:
        return 0
    return 1 + sum(t[k] != v for k, v in TRAIN_PLAIN.items()) + t["steps"] - 3


def size(plan: dict) -> tuple:
    """What shrinking minimises: layers, then the input's size, then the case options off
    their plainest, then the blocks' own options (their JSON length)."""
    try:
        layers = len(build_layers(plan))
    except Invalid:
        layers = 10**6
    plain = {"label_smoothing": 0.0, "reduction": "mean", "mode": "eval", "input": "random",
             "small_blocks": False}
    options = sum(plan.get(k, v) != v for k, v in plain.items()) + _train_size(plan)
    return layers, plan["batch"] * plan["input_shape"][0] * plan["input_shape"][1] * \
        plan["input_shape"][2], options, len(json.dumps(plan["blocks"] + [plan["head"]],
                                                        sort_keys=True))


def shrink(plan: dict, target: str, still_fails, max_tries: int = 150, log=None):
    """(smallest plan found, oracle runs used). `still_fails(plan) -> bool`: whether the plan
    still fails with signature `target`."""
    tries, best = 0, plan
    improved = True
    while improved and tries < max_tries:
        improved = False
        for candidate in proposals(best):
            if size(candidate) >= size(best):
                continue
            tries += 1
            if still_fails(candidate):
                best, improved = candidate, True
                if log:
                    log(f"  shrunk to {size(best)[0]} layers ({tries} tries)")
                break
            if tries >= max_tries:
                break
    return best, tries
