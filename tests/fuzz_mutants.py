"""Does `skylark fuzz` find the mutation self-test's bugs? Cases-to-find and repro size, per mutant.

    python -m tests.fuzz_mutants -j 2                 # every mutant, the committed tree (HEAD)
    python -m tests.fuzz_mutants --only relu_grad_at_zero --budget 100

For each mutant of tests/mutant_list.py: the committed tree (`git archive HEAD`) is copied to a
temporary folder, the mutant's edit applied there (tests/mutants.apply: found exactly once or
ERROR), and cases 0, 1, ... of seed 0 run through the fuzz oracle in that copy (one framework:
jax for the jax_ mutants, onnxruntime for the onnx_ ones, tf for the transfer_ ones,
keras for the keras_ ones, else torch; plus numpy's own oracles: finite differences, config
round trip, reuse, IDX data, checkpoints and resuming) until one fails or BUDGET cases have
passed. A found mutant's case is then shrunk as `skylark fuzz` shrinks it. Prints one line
per mutant (FOUND after N cases, shrunk to L layers / MISSED / OUT OF REACH: why) and a table.

Out of reach by design, and said so rather than scored: three mutants that make a layer's
cached plan (memory order, blocks) stale without changing any value, and one that needs an
option changed on a built layer, which tests/test_plans.py covers. A check made more lenient
is in reach through the fuzzer's planted-error oracle (reference/fuzz/plant.py), compare's
lockstep bar through the gaps the training oracle plants in a passing lockstep record
(reference/fuzz/train.py); training, data and checkpoints through the training, checkpoint
and data oracles (reference/fuzz/train.py, resume.py, data.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mutant_list import MUTANTS  # noqa: E402
from mutants import apply  # noqa: E402

BUDGET = 300
TIMEOUT_S = 900
NOT_CHECKED = "not in one batch of check (training, data, checkpoints or compare)"
# measured: under each of these a layer run again, at another layout or block budget, gives
# bit for bit a fresh layer's values (only its plan, which test_plans.py asserts, is stale)
SPEED_ONLY = "changes a plan's speed, not a value: every output and gradient stays bit-identical"
SET_AFTER = ("needs an option set on a layer after it was built; a model from a config never "
             "changes one")
OUT_OF_REACH = {
    **{n: SPEED_ONLY for n in ("pool_plan_ignores_layout", "pool_plan_ignores_budget",
                               "conv_plan_ignores_budget")},
    "conv_plan_ignores_padding": SET_AFTER,
}
# whole files no oracle runs (none since the training, checkpoint and data oracles:
# reference.fuzz.train, .resume, .data)
NOT_CHECKED_FILES: tuple[str, ...] = ()


def out_of_reach(mutant) -> str:
    """Why the fuzzer cannot see `mutant` ("" when it can)."""
    if NOT_CHECKED_FILES and mutant.file.startswith(NOT_CHECKED_FILES):
        return NOT_CHECKED
    return OUT_OF_REACH.get(mutant.name, "")


def framework_for(name: str) -> str:
    for prefix, fw in (("jax_", "jax"), ("onnx_", "onnxruntime"), ("transfer_", "tf"),
                       ("keras_jax_", "keras-jax"), ("keras_", "keras")):
        if name.startswith(prefix):
            return fw
    return "torch"


def probe(framework: str, budget: int, seed: int) -> dict:
    """In the (mutated) tree this runs in: the first failing case and its shrunk size."""
    from reference.fuzz import tasks
    from reference.fuzz.plan import build_layers

    t0 = time.perf_counter()
    oracle = tasks.oracle((framework,), True)
    if framework not in oracle.runners:
        return {"error": f"{framework} unavailable: {oracle.unavailable}"}
    for i in range(budget):
        v = tasks.run_case((framework,), True, seed, i)
        if v["status"] == "fail":
            f = v["failures"][0]
            if v["plan"] is None:  # skylark crashed generating the case: nothing to shrink
                return {"found": i + 1, "signature": f["signature"], "tries": 0,
                        "layers": "-", "blocks": "-", "from_layers": "-",
                        "seconds": time.perf_counter() - t0}
            small = tasks.shrink_case((framework,), True, v["plan"], i, f, 150)
            return {"found": i + 1, "signature": f["signature"], "tries": small["tries"],
                    "layers": len(build_layers(small["plan"])),
                    "blocks": len(small["plan"]["blocks"]),
                    "from_layers": len(build_layers(v["plan"])),
                    "seconds": time.perf_counter() - t0}
    return {"found": None, "seconds": time.perf_counter() - t0}


def run_one(mutant, budget: int, seed: int) -> dict:
    if mutant.equivalent:
        return {"name": mutant.name, "status": "EQUIVALENT", "why": mutant.equivalent}
    if out_of_reach(mutant):
        return {"name": mutant.name, "status": "OUT OF REACH", "why": out_of_reach(mutant)}
    fw = framework_for(mutant.name)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{mutant.name}-") as tmp:
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        try:
            apply(mutant, Path(tmp))
        except ValueError as e:
            return {"name": mutant.name, "status": "ERROR", "why": str(e)}
        env = {**os.environ, "PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [sys.executable, "-m", "tests.fuzz_mutants", "--probe", fw, "--budget",
               str(budget), "--seed", str(seed)]
        try:
            done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=TIMEOUT_S)
            out = json.loads(done.stdout.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
            return {"name": mutant.name, "status": "ERROR", "framework": fw,
                    "why": f"{type(e).__name__}: {e}"}
    status = "ERROR" if "error" in out else "FOUND" if out["found"] else "MISSED"
    return {"name": mutant.name, "status": status, "framework": fw, **out}


def line(r: dict) -> str:
    if r["status"] == "FOUND":
        return (f"FOUND    {r['name']:<30} {r['framework']:<11} after {r['found']:>3} cases; "
                f"shrunk {r['from_layers']} -> {r['layers']} layers ({r['blocks']} blocks) in "
                f"{r['tries']} runs; {r['signature']}  [{r['seconds']:.0f} s]")
    if r["status"] == "MISSED":
        return f"MISSED   {r['name']:<30} {r['framework']:<11} not in {BUDGET} cases"
    return f"{r['status']:<8} {r['name']:<30} {r.get('why', '')}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz_mutants",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME")
    p.add_argument("-j", "--jobs", type=int, default=1)
    p.add_argument("--budget", type=int, default=BUDGET, help="cases per mutant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    p.add_argument("--probe", metavar="FRAMEWORK", help=argparse.SUPPRESS)  # the worker side
    args = p.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.budget, args.seed)))
        return 0
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = []
        for r in pool.map(lambda m: run_one(m, args.budget, args.seed), chosen):
            print(line(r), flush=True)
            results.append(r)
    found = [r for r in results if r["status"] == "FOUND"]
    scored = [r for r in results if r["status"] in ("FOUND", "MISSED", "ERROR")]
    print(f"\nfuzz found {len(found)} of {len(scored)} mutants in reach within {args.budget} "
          f"cases; {sum(r['status'] == 'OUT OF REACH' for r in results)} out of reach, "
          f"{sum(r['status'] == 'EQUIVALENT' for r in results)} equivalent; "
          f"{time.perf_counter() - t0:.0f} s with -j {args.jobs}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if len(found) == len(scored) else 1


if __name__ == "__main__":
    sys.exit(main())
