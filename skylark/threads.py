"""Pin the thread count of numpy's BLAS, for speed and for reproducible timings.

On a small machine the libraries' default (one thread per core, each library its own pool)
loses: this network's GEMMs are too small to split, and pools from several libraries spin
against each other. Measured here: a Fashion-MNIST epoch took 11.7 s with OpenBLAS's default
threads and 4.2 s with one. (The frameworks' own pools are pinned by
reference.frameworks.pin_threads, which calls this.)
"""

from __future__ import annotations

import os

# Read by the BLAS and OpenMP runtimes when they load (so they only bind libraries loaded later,
# and child processes); threadpoolctl pins a BLAS that is already loaded.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_LIMITS = None


def limit_threads(n: int) -> str:
    """Use `n` threads: env vars for libraries not loaded yet (and for child processes),
    threadpoolctl for numpy's BLAS when it is installed. Returns what was done, for the log."""
    if n < 1:
        raise ValueError(f"threads must be >= 1. Received: threads={n}")
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    done = [f"{n} thread(s) via env"]
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        done.append("numpy BLAS left as is (pip install threadpoolctl to pin it)")
    else:
        global _LIMITS
        _LIMITS = threadpool_limits(n)  # kept referenced: the limit must outlive this call
        done.append("numpy BLAS via threadpoolctl")
    return ", ".join(done)
