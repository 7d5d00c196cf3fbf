"""Interleaved timing: every round times each (framework, mode) once, in a rotating order, so
machine noise hits all of them alike; the floors are timed in the same rounds.

    cell = time_cell(["numpy", "torch"], "skylark", 64, threads=1, seconds=10, log=print)
"""

from __future__ import annotations

import gc
import time

from .cases import INPUT_SHAPE, SEED, bench_model, make_cases
from .floor import gemm_floor, step_work, traffic_floor

FLOORS = ("gemm-floor", "traffic-floor")
MODES = ("train", "infer")


def time_cell(names, model: str, batch: int, threads: int, seconds: float, log) -> dict:
    """{name: {"train": stats, "infer": stats, "first_call_s": ...} or {"missing": why}} for
    each framework and floor at one (model, batch): medians per sample over interleaved rounds."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.uniform(-0.5, 0.5, (batch, *INPUT_SHAPE)).astype(np.float32)  # the data's range
    y = rng.integers(0, 10, batch).astype(np.int64)
    results, tasks = {}, []
    for name in names:
        _build(name, lambda n=name: make_cases(n, model, x, y, threads), results, tasks, log)
    work = step_work(bench_model(model), INPUT_SHAPE)
    results["work_per_sample"] = work
    floors, scale = _floor_cases(work, batch)
    for name, pair in floors.items():
        _build(name, lambda p=pair: p, results, tasks, log)
    round_s = 2 * sum(t[3] for t in tasks if t[0] != "oracle")  # a warm-up call before each
    rounds = int(min(2000, max(7, seconds / max(round_s, 1e-6))))
    log(f"  {model} batch {batch}: {rounds} interleaved rounds")
    _run_rounds(tasks, rounds, results)
    _summarise(results, batch)
    for mode, factor in scale.items():  # the GEMM did m*k*n, not exactly the step's MACs
        for key in ("median_us_per_sample", "p10_us_per_sample", "p90_us_per_sample"):
            results["gemm-floor"][mode][key] *= factor
    return results


def _floor_cases(work: dict, batch: int) -> tuple[dict, dict]:
    """The floors' (train, infer) closures for this batch, and per mode the factor (step's
    multiply-adds / the GEMM's) that turns the GEMM's time into the floor."""
    gemms = {m: gemm_floor(work[f"{m}_macs"] * batch) for m in MODES}
    copies = [traffic_floor(work[f"{m}_bytes"] * batch) for m in MODES]
    scale = {m: work[f"{m}_macs"] * batch / gemms[m][1] for m in MODES}
    floors = {"gemm-floor": (gemms["train"][0], gemms["infer"][0]),
              "traffic-floor": tuple(copies)}
    return floors, scale


def _build(name: str, make, results: dict, tasks: list, log) -> None:
    """Build, warm up and roughly time one framework's two closures; a framework that cannot be
    built or fails its first calls is reported with the reason, never dropped."""
    try:
        train, infer = make()
        entry = {"train": [], "infer": []}
        for mode, fn in (("train", train), ("infer", infer)):
            t0 = time.perf_counter()
            fn()  # the first call: tracing, compiling (tf.function, jax.jit, torch.compile)
            first = time.perf_counter() - t0
            fn()  # warm-up: allocators, caches
            reps = 1 if name == "oracle" else 3
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            steady = (time.perf_counter() - t0) / reps
            entry[f"{mode}_first_call_s"] = first
            entry[f"{mode}_compile_s"] = max(0.0, first - steady)
            tasks.append((name, mode, fn, steady))
    except Exception as e:  # reported in the table as unavailable, with why
        results[name] = {"missing": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        tasks[:] = [t for t in tasks if t[0] != name]
        log(f"  {name}: unavailable ({results[name]['missing']})")
        return
    results[name] = entry


def _run_rounds(tasks: list, rounds: int, results: dict) -> None:
    """Time every task once per round, appending µs per call to results[name][mode]."""
    oracle_rounds = min(rounds, 15)  # ~15 ms a call at batch 1; 15 rounds say enough
    gc.collect()
    gc.disable()  # as timeit does: a collection inside one call would be charged to it
    try:
        for r in range(rounds):
            k = r % len(tasks)
            for name, mode, fn, _ in tasks[k:] + tasks[:k]:  # rotate who goes first
                if name == "oracle" and r >= oracle_rounds:
                    continue
                if name != "oracle":
                    # one untimed call first: the timed one then starts with this framework's
                    # code and data in cache, as every step of a training loop does, not
                    # evicted by the framework timed just before it
                    fn()
                t0 = time.perf_counter_ns()
                fn()
                results[name][mode].append((time.perf_counter_ns() - t0) / 1e3)
    finally:
        gc.enable()


def _summarise(results: dict, batch: int) -> None:
    """Replace each list of µs per call by its median, p10, p90 per sample and its length."""
    import numpy as np

    for name, res in results.items():
        if name == "work_per_sample" or "missing" in res:
            continue
        for mode in MODES:
            us = np.asarray(res.pop(mode))
            res[mode] = {
                "median_us_per_sample": float(np.median(us)) / batch,
                "p10_us_per_sample": float(np.percentile(us, 10)) / batch,
                "p90_us_per_sample": float(np.percentile(us, 90)) / batch,
                "rounds": int(us.size),
            }
