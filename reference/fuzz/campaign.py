"""A campaign: cases 0, 1, 2, ... of a seed across workers, then the first case of each new
failure signature shrunk, and a summary.

    summary = run_campaign(LocalBackend(2), ["torch"], seed=0, seconds=60, out="fuzz-out")

Phase 1 keeps two cases per worker in flight until `seconds` have passed or `cases` cases
have run; phase 2 shrinks, in parallel, the lowest-index case of every new signature (so the
repros do not depend on which worker ran what). The backend (LocalBackend: processes on this
machine; reference.fuzz.cluster.DaskBackend: a cluster) only submits and collects.
"""

from __future__ import annotations

import multiprocessing
import re
import signal
import sys
import time
from collections import Counter

from . import repro, tasks

SHRINK_TRIES = 150
STATUSES = ("pass", "fail", "known", "inexpressible", "invalid")


class LocalBackend:
    """`workers` spawned processes on this machine (spawn: no framework state is forked)."""

    def __init__(self, workers: int) -> None:
        self.slots = workers
        self.pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_exit_on_term)

    def submit(self, fn, *args):
        return self.pool.apply_async(fn, args)

    @staticmethod
    def ready(future) -> bool:
        return future.ready()

    @staticmethod
    def result(future):
        return future.get()

    def close(self, abort: bool = False) -> None:
        """Let the workers exit through atexit (closing their Keras workers); `abort`
        (an interruption): terminate them."""
        if abort:
            self.pool.terminate()
        else:
            self.pool.close()
        self.pool.join()


def _exit_on_term() -> None:
    """In a worker: SIGTERM (Pool.terminate) exits through atexit, which closes the Keras
    worker subprocesses this worker started instead of orphaning them."""
    signal.signal(signal.SIGTERM, _exit_once)


def _exit_once(*_) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one would land in atexit
    sys.exit(0)


def _progress(counts: Counter, n: int, t0: float, seconds, log) -> None:
    rate = n / max(time.perf_counter() - t0, 1e-9)
    left = f", {max(0, seconds - (time.perf_counter() - t0)):.0f} s left" if seconds else ""
    log(f"skylark fuzz: {n} cases ({', '.join(f'{counts[s]} {s}' for s in STATUSES)}), "
        f"{rate:.2f} cases/s{left}")


def run_cases(backend, frameworks, seed: int, seconds=None, cases=None, fd=True,
              log=print, every: float = 10.0) -> tuple[list[dict], float]:
    """Phase 1: (the verdicts in index order, seconds taken)."""
    t0, last = time.perf_counter(), time.perf_counter()
    pending, verdicts, counts, nxt = {}, [], Counter(), 0

    def more() -> bool:
        in_time = seconds is None or time.perf_counter() - t0 < seconds
        return in_time and (cases is None or nxt < cases)

    while True:
        while len(pending) < 2 * backend.slots and more():
            pending[nxt] = backend.submit(tasks.run_case, tuple(frameworks), fd, seed, nxt)
            nxt += 1
        if not pending:
            break
        for i in [i for i, f in pending.items() if backend.ready(f)]:
            v = backend.result(pending.pop(i))
            verdicts.append(v)
            counts[v["status"]] += 1
            if v["status"] == "fail":
                log(f"skylark fuzz: case {i} FAILED: " + "; ".join(
                    f"{f['signature']} ({f['detail']})" for f in v["failures"]))
        if time.perf_counter() - last >= every:
            _progress(counts, len(verdicts), t0, seconds, log)
            last = time.perf_counter()
        time.sleep(0.02)
    return sorted(verdicts, key=lambda v: v["index"]), time.perf_counter() - t0


def first_per_signature(verdicts: list[dict]) -> dict[str, tuple[dict, dict]]:
    """signature -> (the lowest-index verdict failing with it, that failure); new ones only."""
    out: dict[str, tuple[dict, dict]] = {}
    for v in verdicts:
        for f in v["failures"]:
            out.setdefault(f["signature"], (v, f))
    return out


def shrink_all(backend, frameworks, firsts, seed: int, out: str, fd=True, log=print) -> dict:
    """Phase 2: signature -> {"index", "cases", "tries", "layers", "path", "command", ...}."""
    futures = {sig: backend.submit(tasks.shrink_case, tuple(frameworks), fd, v["plan"],
                                   v["index"], f, SHRINK_TRIES)
               for sig, (v, f) in firsts.items() if v["plan"] is not None}
    found = {}
    for sig, fut in futures.items():
        v, f = firsts[sig]
        small = backend.result(fut)
        saved = repro.save(small["plan"], small["failure"], out,
                           f"{seed}-{v['index']}-{f['framework']}")
        found[sig] = {"index": v["index"], "tries": small["tries"],
                      "blocks": len(small["plan"]["blocks"]), **saved,
                      "detail": small["failure"]["detail"]}
        log(f"skylark fuzz: {sig}: shrunk in {small['tries']} runs to "
            f"{len(small['plan']['blocks'])} blocks: {saved['command']}")
    return found


def _why(reason: str) -> str:
    """What the references cannot mirror, without the node's position ("Softmax()")."""
    return re.sub(r"^(spec )?(layer|node) \S+ = ", "", reason.rsplit("Received: ", 1)[-1])[:120]


def run_campaign(backend, frameworks, seed: int, *, seconds=None, cases=None, out="fuzz-out",
                 fd=True, shrink=True, log=print, every: float = 10.0) -> dict:
    """Both phases and the summary dict (counts, rate, divergences, known, missing)."""
    missing = backend.result(backend.submit(tasks.unavailable, tuple(frameworks), fd))
    verdicts, took = run_cases(backend, frameworks, seed, seconds, cases, fd, log, every)
    firsts = first_per_signature(verdicts)
    found = shrink_all(backend, frameworks, firsts, seed, out, fd, log) if shrink else {}
    counts = Counter(v["status"] for v in verdicts)
    return {
        "seed": seed, "frameworks": [f for f in frameworks if f not in missing],
        "missing": {f: r.get("reason", r["status"]) for f, r in missing.items()},
        "cases": len(verdicts), "seconds": took,
        "cases_per_s": len(verdicts) / took if took else 0.0,
        "counts": {s: counts[s] for s in STATUSES},
        "divergences": {sig: {**found.get(sig, {}), "cases": sum(
            any(f["signature"] == sig for f in v["failures"]) for v in verdicts)}
            for sig in firsts},
        "known": dict(Counter(k["known"] for v in verdicts for k in v["known"])),
        "inexpressible": dict(Counter(_why(v["reason"]) for v in verdicts
                                      if v["status"] == "inexpressible")),
        "fingerprint_cases": [(v["index"], v["status"],
                               sorted(f["signature"] for f in v["failures"] + v["known"]))
                              for v in verdicts],
    }
