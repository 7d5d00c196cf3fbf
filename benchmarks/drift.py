"""The float32 drift of every optimizer: docs/optimizers_float32.png.

    python -m benchmarks.drift                    # ~5 minutes on 2 cores
    python -m benchmarks.drift --steps 100 --out /tmp/drift.png

For each optimizer, `skylark compare --dtype float32` trains every framework in lockstep from
the same weights on the same batches (digits, the Skylark net, a cosine schedule with warmup and
global clipping); the figure plots, per optimizer, each framework's running maximum of
|loss - numpy's loss| / max(1, |numpy's loss|). In float32 the frameworks agree to rounding at
the first step; training amplifies that rounding, at a rate that depends on the optimizer.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = {  # optimizer -> its options on the command line
    "sgd": ["--lr", "0.1", "--momentum", "0.9", "--nesterov"],
    "adam": ["--lr", "3e-3"],
    "adamw": ["--lr", "3e-3", "--weight-decay", "0.05"],
    "rmsprop": ["--lr", "1e-3", "--momentum", "0.5"],
}


def run(optimizer: str, steps: int, folder: Path, frameworks: str) -> dict[str, np.ndarray]:
    """framework -> its per-step losses, from `skylark compare`'s curves.csv."""
    from skylark.cli import main

    out = folder / optimizer
    argv = ["compare", "--dtype", "float32", "--steps", str(steps), "--optimizer", optimizer,
            *RUNS[optimizer], "--schedule", "cosine", "--warmup", "10", "--clip-norm", "1.0",
            "--frameworks", frameworks, "--out", str(out), "--quiet"]
    main(argv)  # exit 0 (float32 has no verdict); a not-expressible framework is left out
    losses: dict[str, list[float]] = {}
    with open(out / "curves.csv", newline="") as f:
        for row in csv.DictReader(f):
            losses.setdefault(row["framework"], []).append(float(row["loss"]))
    return {k: np.array(v) for k, v in losses.items()}


def plot(results: dict, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, sharey=True)
    everyone = sorted({n for losses in results.values() for n in losses} - {"numpy"})
    color = {n: f"C{i}" for i, n in enumerate(everyone)}  # one colour per framework throughout
    for ax, (opt, losses) in zip(axes.flat, results.items(), strict=True):
        ref = losses["numpy"]
        for name, loss in losses.items():
            if name == "numpy" or len(loss) != len(ref):
                continue
            gap = np.abs(loss - ref) / np.maximum(1.0, np.abs(ref))
            ax.plot(np.arange(1, len(ref) + 1), np.maximum(np.maximum.accumulate(gap), 1e-10),
                    label=name, color=color[name], lw=1.3)
        missing = [n for n in everyone if n not in losses]
        title = opt + (f" (not expressible: {', '.join(missing)})" if missing else "")
        ax.set_title(title, fontsize=10)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    for ax in axes[:, 0]:
        ax.set_ylabel("running max |Δloss| / max(1, loss)")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"float32 drift from numpy per optimizer, {steps} steps (Skylark net, digits, "
                 "cosine schedule, clip 1.0); 1e-10 = exactly equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--frameworks", default="torch,tf,jax,keras-torch")
    p.add_argument("--out", default="docs/optimizers_float32.png")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = {opt: run(opt, args.steps, Path(tmp), args.frameworks) for opt in RUNS}
    plot(results, Path(args.out), args.steps)
    for opt, losses in results.items():
        ref = losses["numpy"]
        worst = {n: float(np.max(np.abs(v - ref) / np.maximum(1, np.abs(ref))))
                 for n, v in losses.items() if n != "numpy"}
        print(f"{opt}: worst float32 gap over {args.steps} steps: "
              + ", ".join(f"{n} {g:.1e}" for n, g in worst.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
