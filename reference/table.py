"""The README's equivalence table: `skylark check` over float64/float32 x random/ties/digits.

    python -m reference.table            # ~1-2 minutes on 2 cores; exit 1 if any check fails

Each cell: the worst relative error (max|a - b| / max|b|) over every tensor of that framework,
and in brackets the largest fraction of its budget any tensor used ("fwd": a forward-only
runtime, its forward tensors only). Runners (and the Keras
worker subprocesses) are started once and reused for all six checks.
"""

from __future__ import annotations

import sys

from .frameworks import COMPARED
from .harness import run_check
from .registry import get_runner
from .runner import FrameworkUnavailable

DTYPES = ("float64", "float32")
INPUTS = ("random", "ties", "digits")


def cell(result: dict) -> str:
    if result["status"] in ("MISSING", "ERROR"):
        return result["status"]
    rows = [r for r in result["rows"] if r["ok"] is not None]  # None: not computed
    rel = max(r["rel"] for r in rows)
    used = max((r["max_abs"] / r["budget"] for r in rows if r["budget"]), default=0.0)
    flag = "" if result["status"] == "ok" else " FAIL"
    flag += " fwd" if result.get("forward_only") else ""  # forward tensors only
    share = f"{used:.0%}" if used >= 0.01 else f"{used:.0e}"
    return f"{rel:.1e} ({share}){flag}"


def main() -> int:
    names = list(COMPARED)
    runners, results, ok = {}, {}, True
    try:
        for f in names:
            try:
                runners[f] = get_runner(f)
            except FrameworkUnavailable as e:
                print(f"{f} is MISSING: {e.reason}", file=sys.stderr)
        for dtype in DTYPES:
            for kind in INPUTS:
                rep = run_check(names, dtype=dtype, input_kind=kind, runners=runners,
                                log=lambda msg: None)
                ok &= rep["ok"]
                for f, r in rep["frameworks"].items():
                    results[f, dtype, kind] = cell(r)
    finally:
        for r in runners.values():
            r.close()
    head = [f"{d} {k}" for d in DTYPES for k in INPUTS]
    print("| framework | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for f in names:
        print(f"| {f} | " + " | ".join(results[f, d, k] for d in DTYPES for k in INPUTS) + " |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
