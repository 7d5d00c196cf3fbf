"""What a worker process runs: one case, or one shrink. A worker keeps its started frameworks
(an Oracle per framework set) for its life, so each framework starts once per process.

Plain module-level functions of picklable arguments: local worker processes and Dask workers
call the same ones.
"""

from __future__ import annotations

import atexit
import logging
import threading

from .generate import generate
from .oracle import Oracle
from .shrink import shrink

_ORACLES: dict[tuple, Oracle] = {}
# a Dask worker with several threads would run two tasks on one Oracle at once: its runners
# hold one model each, so tasks in one process take turns
_LOCK = threading.RLock()


def oracle(frameworks, fd: bool = True) -> Oracle:
    key = (tuple(frameworks), fd)
    if key not in _ORACLES:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices per model
        _ORACLES[key] = Oracle(list(frameworks), fd=fd)
        atexit.register(_ORACLES[key].close)
    return _ORACLES[key]


def unavailable(frameworks, fd: bool = True) -> dict:
    """The frameworks that could not start in this worker ({name: MISSING/ERROR row})."""
    with _LOCK:
        return oracle(frameworks, fd).unavailable


def run_case(frameworks, fd: bool, seed: int, index: int) -> dict:
    """The verdict on case `index` of the campaign `seed`; a failing one carries its plan."""
    plan = None
    try:
        plan = generate(seed, index)
        with _LOCK:
            verdict = oracle(frameworks, fd).run(plan, index)
    except Exception as e:  # skylark crashed generating or building the case: a finding
        verdict = {"index": index, "status": "fail", "known": [], "fd": False,
                   "frameworks": list(frameworks), "failures": [{
                       "framework": "numpy", "signature": f"numpy ERROR: {type(e).__name__}",
                       "detail": f"{type(e).__name__}: {e}"}]}
    if verdict["status"] != "pass":
        verdict["plan"] = plan
    return verdict


def shrink_case(frameworks, fd: bool, plan: dict, index: int, failure: dict,
                max_tries: int) -> dict:
    """{"plan", "tries", "failure"}: `plan` shrunk while `failure`'s signature persists, run
    on that framework alone (finite differences: on numpy alone)."""
    o = oracle(frameworks, fd)
    target = failure["signature"]
    fw = failure["framework"]
    # numpy-fd, numpy-config: numpy alone; numpy (its reference crashed) and numpy-lockstep
    # (gaps planted in a framework's lockstep record): with one framework
    names = o.frameworks[:1] if fw in ("numpy", "numpy-lockstep") else \
        [] if fw.startswith("numpy-") else [fw]
    last = {"failure": failure}

    def still_fails(candidate) -> bool:
        v = o.run(candidate, index, frameworks=names or ["-"])
        same = [f for f in v["failures"] + v["known"] if f["signature"] == target]
        if same:
            last["failure"] = same[0]
        return bool(same)

    with _LOCK:
        small, tries = shrink(plan, target, still_fails, max_tries)
        if small is not plan:
            still_fails(small)  # the detail of the smallest plan itself
    return {"plan": small, "tries": tries, "failure": last["failure"]}
