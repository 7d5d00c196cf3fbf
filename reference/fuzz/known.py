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
    matches: Callable[[dict, list[dict], str], bool]  # (plan, layers, signature) -> is it this


KNOWN: tuple[Deviation, ...] = ()


def match(plan: dict, layers: list[dict], signature: str) -> str | None:
    """The id of the known deviation this failure is, or None (a new divergence)."""
    framework = signature.split(" ", 1)[0]
    for d in KNOWN:
        if framework in d.frameworks and d.matches(plan, layers, signature):
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
