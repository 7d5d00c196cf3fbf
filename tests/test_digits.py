"""The bundled 8x8 digits (skylark/data/digits.npz): scikit-learn's arrays exactly, small,
shipped with the package with their licence note, and loaded without scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skylark.data.digits import DIGITS_NPZ, load_digits_arrays

ROOT = Path(__file__).resolve().parents[1]


def test_bundle_is_scikit_learns_digits_exactly():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")  # CI installs it ([data])
    want = sklearn_datasets.load_digits()
    images, labels = load_digits_arrays()
    np.testing.assert_array_equal(images.astype(np.float64), want.images)
    np.testing.assert_array_equal(labels, want.target)
    assert labels.dtype == np.int64


def test_bundle_is_small_and_ships_with_its_licence():
    assert DIGITS_NPZ.stat().st_size < 200_000
    licence = DIGITS_NPZ.with_name("DIGITS_LICENSE.md").read_text()
    assert "CC BY 4.0" in licence and "Alpaydin" in licence and "UCI" in licence
    pyproject = (ROOT / "pyproject.toml").read_text()  # the package data a wheel carries
    assert '"skylark.data" = ["digits.npz", "DIGITS_LICENSE.md"]' in pyproject


def test_training_on_digits_needs_no_scikit_learn(tmp_path):
    """`skylark train` on the default dataset with scikit-learn made unimportable."""
    block = tmp_path / "sklearn"
    block.mkdir()
    (block / "__init__.py").write_text("raise ImportError('scikit-learn blocked by the test')\n")
    out = subprocess.run([sys.executable, "-m", "skylark.cli", "train", "--epochs", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "test acc" in out.stdout + out.stderr
    assert " train acc " in out.stderr  # the bar's accuracy is the training batches'


def test_readme_outputs_are_ignored_and_the_bundle_is_not():
    """.gitignore covers what the README's examples write (checkpoints, check reports), never
    the bundled digits (a bare *.npz rule would drop them from the repository)."""
    def ignored(path):
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    for path in ("fm.npz", "ckpt.npz", "check.json", "compare-out/curves.png"):
        assert ignored(path), path
    assert not ignored("skylark/data/digits.npz")
