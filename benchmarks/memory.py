"""Peak working set of one training step: tracemalloc for numpy (exact: numpy reports every
array buffer to it), and the peak-RSS growth of a fresh process for any framework (rough).

    numpy_alloc_peak("skylark", 64)           # MB above what was held before the step
    rss_growth("torch", "skylark", 64, 1)     # MB, from a subprocess (None if it failed)
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from .cases import INPUT_SHAPE, ROOT, SEED, make_cases


def _batch(batch: int):
    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.uniform(-0.5, 0.5, (batch, *INPUT_SHAPE)).astype(np.float32)
    return x, rng.integers(0, 10, batch).astype(np.int64)


def numpy_alloc_peak(model: str, batch: int) -> float:
    """MB: tracemalloc's peak over one warm training step, above what was allocated before it
    (parameters, the optimizer's buffers and reused scratch buffers are not counted; the
    activations the step keeps for backward are)."""
    import tracemalloc

    train, _ = make_cases("numpy", model, *_batch(batch), 1)
    train()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    train()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 2**20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_growth_child(name: str, model: str, batch: int, threads: int) -> None:
    """(Subprocess.) Print the peak-RSS growth, MB, of 5 training steps of a freshly built model,
    over the RSS after building it: the step's working set incl. first-call costs (tracing)."""
    train, _ = make_cases(name, model, *_batch(batch), threads)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0)
    before = _status_kb("VmRSS")
    for _ in range(5):
        train()
    print(json.dumps({"rss_growth_mb": (_status_kb("VmHWM") - before) / 1024}))


def rss_growth(name: str, model: str, batch: int, threads: int) -> float | None:
    cmd = [sys.executable, "-m", "benchmarks.bench", "--threads", str(threads),
           "--models", model, "--_memory", name, str(batch)]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                             check=True).stdout
        return json.loads(out.strip().splitlines()[-1])["rss_growth_mb"]
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError):
        return None
