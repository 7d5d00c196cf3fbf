"""Tiny MNIST-format IDX folders for the CLI tests: fast to load (no scikit-learn import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from skylark.data import write_idx

ROOT = Path(__file__).resolve().parents[1]


def idx_folder(folder: Path, n=(64, 16), hw=(8, 8), seed=0) -> Path:
    """train/t10k images (n[i], *hw) uint8 and labels 0..9, from `seed`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "t10k"), n, strict=True):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (count, *hw),
                                                                      dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, count,
                                                                      dtype=np.uint8))
    return folder


def skylark_cmd(*args) -> list[str]:
    """The `skylark` command as a subprocess argv, using this interpreter."""
    return [sys.executable, "-m", "skylark", *map(str, args)]


def run_cli(*args, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(skylark_cmd(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(stderr: str) -> str:
    """The last stderr line, after checking there is no traceback."""
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]
