"""Known deviations: framework behaviours the reference cannot fix, in one table.

Each row names the frameworks and versions it was seen with, its cause, a minimal repro (a
model JSON under docs/repros/ and the one-line command) and `matches`, which says whether a
failure is this deviation. The fuzzer reports a matching failure as KNOWN, separately from the
passes and from the new divergences, never as a pass and never hidden; `python -m
reference.fuzz.known` prints the table as docs/known_deviations.md shows it.
"""

from __future__ import annotations

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
