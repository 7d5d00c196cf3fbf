"""`skylark train` killed (SIGKILL) at random points, inside the checkpoint write included:
every surviving checkpoint loads, and resuming the chain of survivors ends bit-identical to an
uninterrupted run. Stray temporaries of the killed writes are swept by the next save."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import time

import numpy as np
import pytest
from idxdata import ROOT, idx_folder, skylark_cmd

from skylark.files import PAUSE_ENV
from skylark.model import read_checkpoint
from skylark.models import from_config

EPOCHS = 30
KILLS = 22
TRAIN = ("--epochs", EPOCHS, "--batch-size", 16, "--lr", "0.05", "--momentum", "0.5",
         "--model", "vgg-bn", "--quiet")  # vgg-bn: BatchNorm buffers and dropout masks too


def start(data_dir, ckpt, env=None):
    resume = ("--resume", ckpt) if ckpt.exists() else ()
    return subprocess.Popen(skylark_cmd("train", "--dataset", data_dir, *TRAIN, "--save", ckpt,
                                        *resume),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def wait_for_line(proc, text: str, timeout: float = 60) -> bool:
    """Read stderr until a line holds `text` (True) or the process ends (False)."""
    deadline, buf = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 0.05)[0]:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                return False
            buf += chunk
            if text.encode() in buf:
                return True
    raise AssertionError(f"no {text!r} within {timeout} s: {buf[-2000:]!r}")


def trial(proc, rng: random.Random, paused: bool, folder) -> bool:
    """Kill `proc` at its pause inside a write, or a random moment after it began training;
    True if it was killed, False if it finished first."""
    marker = "paused inside the write" if paused else "model vgg-bn"
    if wait_for_line(proc, marker):
        if paused:  # really inside: the temporary is there, not yet renamed
            assert list(folder.glob(".c.npz.*.tmp"))
        else:
            time.sleep(rng.uniform(0, 0.25))
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode in (-signal.SIGKILL, 0), err
    return proc.returncode == -signal.SIGKILL


def run_to_end(data_dir, ckpt) -> None:
    proc = start(data_dir, ckpt)
    _, err = proc.communicate()
    assert proc.returncode == 0, err


def snapshot(path):
    arrays, meta, extra = read_checkpoint(path)
    return arrays, meta, extra


def assert_same(a, b):
    (arrays_a, meta_a, extra_a), (arrays_b, meta_b, extra_b) = a, b
    assert meta_a == meta_b
    for x, y in ((arrays_a, arrays_b), (extra_a, extra_b)):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k


@pytest.mark.slow
def test_kill_anywhere_then_resume_is_bit_identical(tmp_path):
    data_dir = idx_folder(tmp_path / "data")
    ref = tmp_path / "ref" / "c.npz"
    ref.parent.mkdir()
    run_to_end(data_dir, ref)
    expected = snapshot(ref)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt, rng = run_dir / "c.npz", random.Random(0)
    kills = in_write = chains = survivors = 0
    while kills < KILLS:
        paused = rng.random() < 0.5
        env = {PAUSE_ENV: str(rng.randint(1, 4))} if paused else None
        if trial(start(data_dir, ckpt, env), rng, paused, run_dir):
            kills += 1
            in_write += paused
            if ckpt.exists():  # a survivor: it loads (and the next trial resumes it)
                _, meta, _ = read_checkpoint(ckpt)
                from_config(meta["model"]).load(ckpt)
                survivors += 1
            continue
        assert_same(snapshot(ckpt), expected)  # finished: the chain of resumes reached the end
        ckpt.unlink()
        chains += 1
    if ckpt.exists():
        run_to_end(data_dir, ckpt)
        assert_same(snapshot(ckpt), expected)
        chains += 1
    assert [p.name for p in run_dir.iterdir()] in ([], ["c.npz"])  # strays swept
    print(f"{kills} kills ({in_write} inside a write), {survivors} survivors, {chains} chains")
    assert in_write >= 5 and chains >= 1
