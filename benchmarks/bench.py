"""Time a training step and inference of every built-in model: skylark (numpy) against torch
(eager and torch.compile), TF (tf.function), Keras and jax.jit, beside the machine's floors.

    python -m benchmarks.bench                  # the README tables (~10 min on 2 cores)
    python -m benchmarks.bench --quick          # a smoke run (a few minutes), writes no JSON
    python -m benchmarks.bench --models skylark --frameworks numpy jax --threads 2

Per (model, batch size) one cell of interleaved rounds (benchmarks/timing.py): every round
times each framework's train and infer closure (benchmarks/cases.py) and the two floors
(benchmarks/floor.py) once, in a rotating order. Reported: medians per sample; numpy ÷ the
fastest peer and numpy ÷ each floor (benchmarks/report.py); peak working set per sample
(benchmarks/memory.py). Progress goes to stderr, the tables to stdout, everything to JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root, for `reference`

from reference.frameworks import pin_threads  # noqa: E402

FRAMEWORKS = ("numpy", "torch", "torch-compile", "tf", "keras", "jax")
MODELS = ("skylark", "lenet5", "vgg-bn")  # the default; the graph zoo (skylark.zoo) by name
PINNED = "SKYLARK_BENCH_THREADS"  # set once this process was started with pinned threads


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Median time per sample of a training step and of inference, interleaved "
                    "across frameworks and floors; prints markdown tables, writes JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME|FILE",
                   help="built-in names, .json model files or module:function")
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS,
                   help="frameworks to time (one that is unavailable is reported, with why)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64, 256])
    p.add_argument("--threads", type=int, default=1,
                   help="threads (and CPU cores, by affinity) for every library")
    p.add_argument("--seconds", type=float, default=8.0,
                   help="timing budget per (model, batch size) cell (sets the rounds)")
    p.add_argument("--epoch-batches", type=int, default=200,
                   help="Fashion-MNIST batches timed for the epoch estimate (0: skip)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-RSS subprocesses (numpy's tracemalloc peak is kept)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: --seconds 1.5, --epoch-batches 0, --no-memory")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="where to write the JSON results [default: benchmarks/results.json "
                        "for a full run; nothing for --quick, so a smoke run never overwrites "
                        "the measured results]")
    p.add_argument("--_memory", nargs=2, metavar=("FRAMEWORK", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads < 1 or min(args.batch_sizes) < 1:
        p.error(f"--threads and --batch-sizes must be >= 1. Received: --threads {args.threads} "
                f"--batch-sizes {' '.join(map(str, args.batch_sizes))}")
    if args.quick:
        args.seconds, args.epoch_batches, args.no_memory = 1.5, 0, True
    elif args.json is None:
        args.json = "benchmarks/results.json"
    return args


def repin_and_exec(threads: int, argv) -> None:
    """Thread-count environment variables bind a library only when it loads, and numpy (with
    its BLAS) is already imported here: so set them (reference.frameworks.pin_threads knows
    every library's; XLA_FLAGS for jax) and start this command again under them."""
    pin_threads(threads)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                               f"{'false' if threads == 1 else 'true'} "
                               f"intra_op_parallelism_threads={threads}").strip()
    os.environ[PINNED] = str(threads)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks.bench", *argv])


def pin_cores(threads: int) -> str:
    """Confine the process to `threads` CPU cores: a library that ignores its thread setting
    (XLA's pools) still gets no more cores than the others. Returns what was done."""
    how = "env vars before import + threadpoolctl + torch/TF settings + XLA_FLAGS"
    try:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > threads:
            os.sched_setaffinity(0, cores[:threads])
            return how + f"; CPU affinity {cores[:threads]}"
    except (AttributeError, OSError):
        pass
    return how


def tf_threads(threads: int) -> None:
    """Pin TF's intra- and inter-op thread pools (before TF runs anything); no-op without TF."""
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except ImportError:
        pass


def environment(args, pinning: str) -> dict:
    import numpy as np

    import skylark as sk

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "skylark": sk.__version__}
    for mod in ("torch", "tensorflow", "keras", "jax"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: i.get(k) for k in ("internal_api", "num_threads", "version")}
                for i in threadpool_info()]
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from .cases import LR, MOMENTUM

    return {
        "models": args.models, "frameworks": args.frameworks, "batch_sizes": args.batch_sizes,
        "threads": args.threads, "pinning": pinning, "blas": blas, "versions": versions,
        "machine": f"{cpu}, {os.cpu_count()} logical CPUs", "lr": LR, "momentum": MOMENTUM,
        "command": "python -m benchmarks.bench " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def memory_cells(model: str, args, log) -> dict:
    """Per batch size: numpy's tracemalloc peak, and (unless --no-memory) the peak-RSS growth
    of numpy and torch in fresh processes, all MB."""
    from .memory import numpy_alloc_peak, rss_growth

    cells = {}
    for b in sorted(set(args.batch_sizes)):
        cell = {"numpy_alloc_peak_mb": numpy_alloc_peak(model, b)}
        if not args.no_memory:
            for name in ("numpy", "torch"):
                if name in args.frameworks:
                    cell[f"{name}_rss_growth_mb"] = rss_growth(name, model, b, args.threads)
        cells[str(b)] = cell
    log(f"  {model}: memory measured")
    return cells


def run_model(model: str, args, log) -> dict:
    from .report import ratios
    from .timing import time_cell

    out = {"timing": {}, "ratios": {}}
    for b in sorted(set(args.batch_sizes)):
        # the oracle (the tutorials' loops) exists for the Skylark net only; batch 1 only
        names = list(args.frameworks) + (["oracle"] if b == 1 and model == "skylark" else [])
        cell = time_cell(names, model, b, args.threads, args.seconds, log)
        out["timing"][str(b)] = cell
        out["ratios"][str(b)] = ratios(cell)
    out["memory"] = memory_cells(model, args, log)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if os.environ.get(PINNED) != str(args.threads):
        repin_and_exec(args.threads, argv)
    pinning = pin_cores(args.threads)
    if {"tf", "keras"} & set(args.frameworks) or (args._memory and args._memory[0] in
                                                  ("tf", "keras")):
        tf_threads(args.threads)
    if args._memory:
        from .memory import rss_growth_child

        rss_growth_child(args._memory[0], args.models[0], int(args._memory[1]), args.threads)
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log(f"threads: {args.threads} ({pinning})")
    res = {"config": environment(args, pinning), "models": {}}
    for model in args.models:
        res["models"][model] = run_model(model, args, log)
    if args.epoch_batches > 0 and "skylark" in args.models:
        from .epoch import epoch_seconds

        res["epoch"] = epoch_seconds("skylark", args.epoch_batches, args.threads, log)
    return _finish(res, args, log)


def _finish(res: dict, args, log) -> int:
    from .report import markdown

    table = markdown(res)
    res["markdown"] = table
    print(f"\n`{res['config']['command']}`\n")
    print(table)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, path)  # never a half-written results file
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
