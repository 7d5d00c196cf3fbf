"""Known deviations: framework behaviours the reference cannot fix, in one table.

Each row names the frameworks and versions it was seen with, its cause, a minimal repro (a
model JSON under docs/repros/ and the one-line command) and `matches`, which says whether a
failure is this deviation. The fuzzer reports a matching failure as KNOWN, separately from the
passes and from the new divergences, never as a pass and never hidden; `python -m
reference.fuzz.known` prints the table as docs/known_deviations.md shows it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple


class Deviation(NamedTuple):
    id: str
    frameworks: tuple[str, ...]
    versions: str  # the versions it was measured with
    cause: str
    repro: str  # the one-line command (its model JSON lives in docs/repros/)
    matches: Callable[[dict, list[dict], dict], bool]  # (plan, layers, failure) -> is it this


def _single_output_conv(plan: dict, layers: list[dict], failure: dict) -> bool:
    return "grad_weight must be contiguous" in failure["detail"] and any(
        e["kind"] == "conv2d" and e["out_channels"] == 1 for e in layers)


_ELEMENTWISE = ("silu", "sigmoid", "gelu", "hardswish", "hardsigmoid", "tanh")


def _tail_rounding_tie(plan: dict, layers: list[dict], failure: dict) -> bool:
    """A backward pass first off at the output gradient of an elementwise activation that a
    max-pool reads (its forward, and every tensor before it, within the bar)."""
    if not re.search(r" FAIL (loss|cot): ", failure["signature"]):
        return False
    found = re.match(r"(loss|cot)/d\.out\.(\S+):", failure["detail"])
    names = [e.get("name", str(i)) for i, e in enumerate(layers)]
    if not found or found.group(2) not in names:
        return False
    i = names.index(found.group(2))
    readers = [e for j, e in enumerate(layers)
               if names[i] in (e.get("inputs") or ([names[j - 1]] if j else []))]
    return layers[i]["kind"] in _ELEMENTWISE and any(e["kind"] == "maxpool2d" for e in readers)


def has_tails(plan: dict) -> bool:
    """The case drives an activation into its tails (reference.fuzz.generate.tails)."""
    return bool((plan.get("head") or {}).get("tails")) or any(
        b.get("tails") for b in plan.get("blocks", []))


def _saturated_tie(plan: dict, layers: list[dict], failure: dict) -> bool:
    """_tail_rounding_tie's failure on a case with activation tails: the saturated outputs (or,
    on the tie-heavy inputs, the non-dyadic values the tails' affine map brings in) tie or not
    by the last ulp of each library's tanh, sigmoid or exp. Limited to such cases so that a
    max-pool backward bug still shows on every other case."""
    return has_tails(plan) and _tail_rounding_tie(plan, layers, failure)


KNOWN: tuple[Deviation, ...] = (
    Deviation(
        "keras-torch-conv-one-filter", ("keras-torch",), "keras 3.15.1, torch 2.13.0+cpu",
        "Keras' torch backend: the backward of a Conv2D with one output channel, several input "
        "channels and a kernel above 1x1 raises `RuntimeError: slow_conv2d: grad_weight must "
        "be contiguous` (torch's CPU slow_conv2d backward is handed the kernel Keras permuted "
        "from (kh, kw, in, 1) without a copy); the forward pass is right, there is no gradient "
        "to compare, and the reference cannot change Keras' conv",
        "skylark check --model docs/repros/repro-keras-torch-conv-one-filter.json --frameworks "
        "keras-torch --dtype float64 --input random --input-shape 4,1,1 --batch 1 --seed 0 "
        "--mode eval",
        _single_output_conv),
    Deviation(
        "keras-torch-elementwise-tail-ties", ("keras-torch",), "keras 3.15.1, torch 2.13.0+cpu",
        "torch's CPU elementwise kernels round an element differently depending on where it "
        "sits in the buffer (the vectorized body against the scalar tail): Keras' torch "
        "backend, which keeps maps channels-last, gets equal inputs to SiLU back one ulp apart "
        "(measured: in a (1, 11, 9, 5) map, two cells of one channel holding the same input, at"
        " flat positions 483 and 493 of 495, come back one ulp off the others). Every forward "
        "tensor is within the bar, but a max-pool window that ties in exact arithmetic no "
        "longer ties there, its gradient goes to another cell, and the output gradient of the "
        "activation is O(1) off; the reference cannot change how torch rounds",
        "skylark check --model docs/repros/repro-keras-torch-silu-tail-ties.json --frameworks "
        "keras-torch --dtype float64 --input kinks --input-shape 4,10,6 --batch 1 --seed "
        "42252606 --mode train",
        _tail_rounding_tie),
    Deviation(
        "saturated-activation-pool-ties",
        ("torch", "tf", "jax", "keras", "keras-tensorflow", "keras-torch", "keras-jax"),
        "numpy 2.4.6, torch 2.13.0+cpu, TF 2.21.0, JAX 0.10.2, keras 3.15.1",
        "a smooth activation driven into its tails saturates: tanh(x) for x past ~9 is 1 - "
        "3e-8, which float32 rounds to 1 or to 1 - 6e-8 depending on the library's last ulp "
        "(each within an ulp of the exact value, as the elementwise oracle checks). Where a "
        "max-pool reads those outputs, a window of saturated values ties in one library and "
        "not in another, and its gradient goes to another cell: every forward tensor is within "
        "the bar, the activation's output gradient is O(1) off. The same on the tie-heavy "
        "inputs, whose exact ties the tails' non-dyadic affine map and activation turn into "
        "values equal only up to rounding. Which cell gets a tie's gradient is decided by the "
        "last ulp; no reference can fix that",
        "skylark check --model docs/repros/repro-saturated-tanh-pool-ties.json --frameworks "
        "torch --dtype float32 --input random --input-shape 1,11,10 --batch 2 --seed "
        "1420521623 --mode eval",
        _saturated_tie),
)


def match(plan: dict, layers: list[dict], failure: dict) -> str | None:
    """The id of the known deviation `failure` ({framework, signature, detail}) is, or None
    (a new divergence)."""
    for d in KNOWN:
        if failure["framework"] in d.frameworks and d.matches(plan, layers, failure):
            return d.id
    return None


def table() -> str:
    """The table as markdown."""
    lines = ["| id | frameworks | versions | cause | repro |", "|---|---|---|---|---|"]
    lines += [f"| {d.id} | {', '.join(d.frameworks)} | {d.versions} | {d.cause} | "
              f"`{d.repro}` |" for d in KNOWN]
    if not KNOWN:
        lines.append("| (none) | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
