"""What Adam costs over SGD in a training step: numpy's extra time against torch's.

    python -m benchmarks.optimizers                 # batch 1, 64, 256; ~2 minutes on 2 cores
    python -m benchmarks.optimizers --models vgg-bn --batch-sizes 64

Per (model, batch), numpy and torch (eager, torch.optim), each with SGD (momentum 0.9) and
with Adam (torch's defaults), 1 thread: the full training step (forward, loss, backward,
update) on one fixed float32 batch, and the optimizer's `step()` alone on the gradients one
backward left (what Adam adds is there; in the full step it is within the noise at large
batches). All closures are timed in interleaved rounds, each after an untimed warm call, in a
rotating order (as benchmarks/timing.py times the main table); medians are reported, and
Adam's overhead (Adam's step() - SGD's step()) per framework.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reference.frameworks import pin_threads  # noqa: E402

LR_SGD, LR_ADAM, MOMENTUM = 0.01, 1e-3, 0.9


def _masks(net, batch):
    """The fixed dropout masks every framework's training step uses (as benchmarks/cases.py)."""
    from reference.inputs import dropout_masks
    from reference.spec import describe

    from .cases import INPUT_SHAPE, SEED

    return dropout_masks(describe(net), INPUT_SHAPE, batch, SEED)


def _numpy(model, x, y, optimizer):
    """(full training step, the optimizer's step() alone) in numpy: benchmarks/cases.py's
    step with this optimizer."""
    from skylark.optim import build_optimizer, optimizer_config

    from .cases import _numpy_case, bench_model

    net = bench_model(model)
    config = (optimizer_config("sgd", LR_SGD, momentum=MOMENTUM) if optimizer == "sgd"
              else optimizer_config("adam", LR_ADAM))
    opt = build_optimizer(net, config)
    train, _ = _numpy_case(net, x, y, _masks(net, len(x)), opt)
    return train, opt.step


def _torch(model, x, y, optimizer):
    """The same in torch eager (benchmarks/cases.py's step with this torch.optim class)."""
    import torch

    from reference.runners.registry import get_runner
    from reference.spec import describe

    from .cases import INPUT_SHAPE, _torch_case, bench_model

    net = bench_model(model)
    runner = get_runner("torch")
    runner.setup(describe(net), net.state(), "float32", INPUT_SHAPE)
    make = ((lambda ps: torch.optim.SGD(ps, lr=LR_SGD, momentum=MOMENTUM)) if optimizer == "sgd"
            else (lambda ps: torch.optim.Adam(ps, lr=LR_ADAM)))
    train, _ = _torch_case(runner, x, y, 1, _masks(net, len(x)), make)
    return train, train.optimizer.step


def time_cell(model: str, batch: int, seconds: float) -> dict:
    """{"numpy-sgd": median µs, ...} for one (model, batch), interleaved rounds."""
    import numpy as np

    from .cases import INPUT_SHAPE, SEED

    rng = np.random.default_rng(SEED)
    x = rng.uniform(-0.5, 0.5, (batch, *INPUT_SHAPE)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    tasks = {}
    for fw, make in (("numpy", _numpy), ("torch", _torch)):
        for opt in ("sgd", "adam"):
            tasks[f"{fw}-{opt}"], tasks[f"{fw}-{opt}-update"] = make(model, x, y, opt)
    t0 = time.perf_counter()
    for fn in tasks.values():  # the full steps first: they leave the gradients step() reads
        fn()
    per_round = 2 * (time.perf_counter() - t0)
    rounds = int(min(3000, max(9, seconds / max(per_round, 1e-6))))
    times = {k: [] for k in tasks}
    names = list(tasks)
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                tasks[name]()  # warm: its code and data in cache, as in a training loop
                t = time.perf_counter_ns()
                tasks[name]()
                times[name].append((time.perf_counter_ns() - t) / 1e3)
    finally:
        gc.enable()
    return {"rounds": rounds, **{k: statistics.median(v) for k, v in times.items()}}


def report(cells: dict) -> str:
    rows = ["| model | batch | numpy step, SGD / Adam | numpy step() SGD / Adam | numpy's Adam "
            "overhead | torch step, SGD / Adam | torch step() SGD / Adam | torch's Adam "
            "overhead | overhead numpy ÷ torch |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (model, batch), c in cells.items():
        over = {fw: c[f"{fw}-adam-update"] - c[f"{fw}-sgd-update"] for fw in ("numpy", "torch")}
        cols = []
        for fw in ("numpy", "torch"):
            cols += [f"{c[f'{fw}-sgd']:.0f} / {c[f'{fw}-adam']:.0f} µs",
                     f"{c[f'{fw}-sgd-update']:.0f} / {c[f'{fw}-adam-update']:.0f} µs",
                     f"+{over[fw]:.0f} µs ({100 * over[fw] / c[f'{fw}-sgd']:.1f}% of a step)"]
        rows.append(f"| {model} | {batch} | {' | '.join(cols)} | "
                    f"{over['numpy'] / over['torch']:.2f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.optimizers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["skylark", "vgg-bn"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64, 256])
    p.add_argument("--seconds", type=float, default=8.0, help="timing budget per cell")
    p.add_argument("--json", default="benchmarks/results_optim.json",
                   help="where to write the medians ('' for nowhere)")
    args = p.parse_args(argv)
    pin_threads(1)
    cells = {}
    for model in args.models:
        for batch in args.batch_sizes:
            print(f"  {model} batch {batch} ...", file=sys.stderr, flush=True)
            cells[(model, batch)] = time_cell(model, batch, args.seconds)
    print(report(cells))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"model": m, "batch": b, **c} for (m, b), c in cells.items()], indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
