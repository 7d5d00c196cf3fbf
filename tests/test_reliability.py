"""Bad data, bad parameters, bad gradients, nothing compared, and SIGTERM: clear errors."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from idxdata import ROOT, idx_folder, one_line_error, run_cli, skylark_cmd

import reference.commands.check as check
import skylark as sk
from skylark import layers as L
from skylark.cli import main
from skylark.data import datasets, idx, load_dataset

# ---------------------------------------------------------------- datasets


@pytest.mark.parametrize("n, message", [((0, 8), "has no training images"),
                                        ((16, 0), "has no test images")])
def test_train_refuses_a_dataset_without_images(n, message, tmp_path, capsys):
    data_dir, ckpt = idx_folder(tmp_path / "d", n=n), tmp_path / "c.npz"
    code = main(["train", "--dataset", str(data_dir), "--epochs", "1", "--quiet",
                 "--save", str(ckpt)])
    assert code == 2
    assert message in one_line_error(capsys.readouterr().err)
    assert not ckpt.exists()  # never a checkpoint labelled as trained


def test_evaluate_on_no_images_is_a_value_error():
    from skylark.train import evaluate

    with pytest.raises(ValueError, match=r"Received: x with shape \(0, 1, 8, 8\)"):
        evaluate(sk.skylark_cnn((1, 8, 8)), np.zeros((0, 1, 8, 8), np.float32),
                 np.zeros(0, np.int64))


def test_compare_with_no_training_images_stops_at_once(tmp_path):
    """It used to loop forever building a batch schedule that never grew."""
    data_dir = idx_folder(tmp_path / "d", n=(0, 8))
    proc = run_cli("compare", "--dataset", data_dir, "--steps", "5", "--frameworks", "torch",
                   "--quiet", "--out", tmp_path / "o", timeout=60)
    assert proc.returncode == 2
    assert "has no training images" in one_line_error(proc.stderr)


@pytest.fixture
def unreadable(monkeypatch):
    """deny(path): make `path` unreadable (a file) or unsearchable (a folder). chmod does it
    for a normal user; root ignores modes, so there the denial is simulated where skylark
    meets it (opening the file, looking inside the folder)."""
    real_open, real_stat, denied = open, os.stat, []

    def refuse(path, *args, **kwargs):  # a folder's contents, or the file itself
        p = os.path.abspath(path)
        if any(p.startswith(d + os.sep) or (p == d and not refuse.stat) for d in denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return (real_stat if refuse.stat else real_open)(path, *args, **kwargs)

    def deny(path):
        path.chmod(0)
        denied.append(str(path))
        if os.geteuid() == 0:
            refuse.stat = path.is_dir()
            target = (datasets.os, "stat") if path.is_dir() else (idx, "open")
            monkeypatch.setattr(*target, refuse, raising=False)

    yield deny
    for d in denied:
        os.chmod(d, 0o755)


def test_unreadable_data_file_is_named(tmp_path, unreadable, capsys):
    data_dir = idx_folder(tmp_path / "d")
    unreadable(data_dir / "t10k-labels-idx1-ubyte")
    assert main(["train", "--dataset", str(data_dir), "--epochs", "1", "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "permission denied" in line and "t10k-labels-idx1-ubyte" in line


def test_unreadable_folder_is_a_permission_problem(tmp_path, unreadable):
    data_dir = idx_folder(tmp_path / "d")
    unreadable(data_dir)
    with pytest.raises(PermissionError, match="permission denied: cannot look inside"):
        load_dataset(data_dir)


@pytest.mark.parametrize("hw", [(2, 2), (0, 0)])
def test_images_too_small_for_the_net_exit_2(hw, tmp_path, capsys):
    data_dir = idx_folder(tmp_path / "d", hw=hw)
    assert main(["train", "--dataset", str(data_dir), "--epochs", "1", "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"Received: input spatial size {hw}" in line or "images without pixels" in line


# ---------------------------------------------------------------- load_params: all or nothing


def _mapping(model, name, value):
    return {k: (value if k == name else v.copy()) for k, v in model.params().items()}


@pytest.mark.parametrize("value, message", [
    (lambda w: w.astype(np.complex128), "must hold real numbers. Received: dtype=complex128"),
    (lambda w: np.full(w.shape, "a"), "must hold real numbers"),
    (lambda w: np.full(w.shape, 1e300), "overflows float32 .* Received: a value 1e\\+300"),
    (lambda w: np.full(w.shape, np.inf), "holds nan or inf"),
], ids=["complex", "str", "float64 1e300", "inf"])
def test_load_params_changes_nothing_unless_every_entry_fits(value, message):
    """The bad entry is the last one: every entry before it must stay as it was."""
    model = sk.skylark_cnn((1, 8, 8))
    before = {k: v.copy() for k, v in model.params().items()}
    last = list(before)[-1]
    mapping = {k: v + 1 for k, v in before.items()}
    mapping[last] = value(before[last])
    with pytest.raises(ValueError, match=f"parameter '{last}' {message}"):
        model.load_params(mapping)
    for k, v in model.params().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# ---------------------------------------------------------------- backward shape checks

LAYERS = {
    "ReLU": (L.ReLU, (2, 3, 6, 6)), "LeakyReLU": (lambda: L.LeakyReLU(0.1), (2, 3, 6, 6)),
    "Sigmoid": (L.Sigmoid, (2, 3, 6, 6)), "Tanh": (L.Tanh, (2, 3, 6, 6)),
    "Softmax": (L.Softmax, (4, 10)), "Flatten": (L.Flatten, (2, 3, 6, 6)),
    "MaxPool2D": (lambda: L.MaxPool2D(2), (2, 3, 6, 6)),
    "AvgPool2D": (lambda: L.AvgPool2D(2, padding=1), (2, 3, 6, 6)),
    "GlobalAvgPool2D": (L.GlobalAvgPool2D, (2, 3, 6, 6)),
    "Dropout": (lambda: L.Dropout(0.5), (2, 3, 6, 6)),
    "BatchNorm2d": (lambda: L.BatchNorm2d(3, dtype="float64"), (2, 3, 6, 6)),
}


def _wrong_shapes(shape):
    """Shapes numpy would broadcast (or reshape) without a word, and a transposed one."""
    return [(1, *shape[1:]), (*shape[:-1], 1), shape[::-1], (int(np.prod(shape)),)]


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_rejects_a_wrongly_shaped_gradient(name):
    make, in_shape = LAYERS[name]
    layer = make()
    y = layer.forward(np.random.default_rng(0).standard_normal(in_shape))
    layer.backward(np.ones(y.shape))  # the right shape passes
    for bad in _wrong_shapes(y.shape):
        if bad == y.shape:
            continue
        with pytest.raises(ValueError, match=rf"{name}.backward expects a gradient of the "
                                             rf"output's shape .*Received: dy with shape"):
            layer.backward(np.ones(bad))


# ---------------------------------------------------------------- check: nothing compared


def test_check_allow_missing_with_nothing_compared_fails(monkeypatch, capsys):
    def nothing_installed(frameworks, **kwargs):
        return {"config": {"dtype": "float32", "input": "random", "batch": 4, "seed": 0,
                           "input_shape": [1, 28, 28], "weights": "raw", "loss": {}},
                "frameworks": {f: {"status": "MISSING", "reason": "not installed"}
                               for f in frameworks}}

    monkeypatch.setattr(check, "run_check", nothing_installed)
    assert main(["check", "--allow-missing", "--frameworks", "torch,tf"]) == 1
    out = capsys.readouterr().out
    assert "passed" not in out and "nothing compared" in out


# ---------------------------------------------------------------- SIGTERM


def _wait_for(predicate, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    data_dir, ckpt = idx_folder(tmp_path / "d"), tmp_path / "c.npz"
    proc = subprocess.Popen(skylark_cmd("train", "--dataset", data_dir, "--epochs", "100000",
                                        "--quiet", "--save", ckpt),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(ckpt.exists, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143  # 128 + SIGTERM, as a shell reports it
    assert one_line_error(err) == "skylark train: terminated"
    assert sk.skylark_cnn((1, 8, 8)).load(ckpt)["epoch"] >= 1
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.slow
def test_sigterm_to_compare_leaves_no_worker(tmp_path):
    """A Keras worker runs in its own session (a terminal's Ctrl-C reaches only the parent),
    and the parent closes it on SIGTERM."""
    pytest.importorskip("keras")
    pytest.importorskip("torch")
    proc = subprocess.Popen(
        [sys.executable, "-m", "skylark", "compare", "--frameworks", "keras-torch", "--steps",
         "100000", "--quiet", "--out", str(tmp_path / "o")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def children():
        pgrep = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        return [int(p) for p in pgrep.stdout.split()]

    _wait_for(children, proc, timeout=120)
    [child] = children()
    assert os.getsid(child) != os.getsid(proc.pid)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child), "orphaned worker"


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container without an init may leave zombies unreaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
