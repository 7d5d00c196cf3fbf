"""Output paths checked before any work, a full disk, stray temporaries, compare's result set."""

from __future__ import annotations

import argparse
import builtins
import errno
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from idxdata import idx_folder, one_line_error

import reference.commands.compare as cmp
import skylark as sk
from reference import results
from skylark import files
from skylark.cli import main
from skylark.model import read_checkpoint
from skylark.optim import Schedule, optimizer_config


@pytest.fixture
def data_dir(tmp_path):
    return idx_folder(tmp_path / "data")


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nothing can be created in. chmod is enough for a normal user; root ignores
    it, so there creating a file inside is refused as a read-only mount would refuse it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real_open = builtins.open

        def refusing_open(path, mode="r", *args, **kwargs):
            if os.path.dirname(os.path.abspath(path)) == str(folder) and "r" not in mode:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(files, "open", refusing_open, raising=False)
    yield folder
    folder.chmod(0o755)


def _save_cases(tmp_path, read_only):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir.npz").mkdir()
    return {
        "a folder": (tmp_path / "a_dir.npz", "names a folder, not a file"),
        "under a file": (tmp_path / "a_file" / "c.npz", "lies under a file"),
        "read-only folder": (read_only / "c.npz", "cannot write in the folder of --save"),
        "missing folder": (tmp_path / "nope" / "c.npz", "folder of --save does not exist"),
        "not .npz": (tmp_path / "c.txt", "ending in .npz"),
    }


@pytest.mark.parametrize("case", ["a folder", "under a file", "read-only folder",
                                  "missing folder", "not .npz"])
def test_train_save_checked_before_any_training(case, tmp_path, read_only, data_dir, capsys):
    path, message = _save_cases(tmp_path, read_only)[case]
    code = main(["train", "--dataset", str(data_dir), "--epochs", "1", "--quiet",
                 "--save", str(path)])
    out = capsys.readouterr()
    assert code == 2
    line = one_line_error(out.err)
    assert message in line and f"--save={str(path)!r}" in line
    assert "epoch" not in out.out  # nothing trained


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only folder"])
def test_compare_out_checked_before_any_training(case, tmp_path, read_only, data_dir, capsys):
    (tmp_path / "a_file").write_text("x")
    path, message = {
        "a file": (tmp_path / "a_file", "a file of that name exists"),
        "under a file": (tmp_path / "a_file" / "out", "lies under a file"),
        "read-only folder": (read_only, "cannot write in the folder of --out"),
    }[case]
    code = main(["compare", "--dataset", str(data_dir), "--steps", "1", "--quiet",
                 "--frameworks", "torch", "--out", str(path)])
    out = capsys.readouterr()
    assert code == 2
    line = one_line_error(out.err)
    assert message in line and f"--out={str(path)!r}" in line
    assert "steps of batch" not in out.err  # stopped before the run began


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, data_dir, monkeypatch, capsys):
    ckpt = tmp_path / "c.npz"
    real_savez, calls = np.savez, []

    def savez_then_full(f, **arrays):
        calls.append(1)
        if len(calls) == 2:  # the second epoch's checkpoint: the disk fills up mid-write
            f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_savez(f, **arrays)

    monkeypatch.setattr(np, "savez", savez_then_full)
    code = main(["train", "--dataset", str(data_dir), "--epochs", "3", "--quiet",
                 "--save", str(ckpt)])
    err = capsys.readouterr().err
    assert code == 1
    line = one_line_error(err)
    assert "No space left on device" in line and "after epoch 2" in line and "kept" in line
    _, meta, _ = read_checkpoint(ckpt)
    assert meta["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "data"]  # no temporary


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stray_temporaries_of_dead_writers_are_swept(tmp_path):
    ckpt = tmp_path / "c.npz"
    old = time.time() - 2 * files.LEGACY_TMP_AGE_S
    strays = {
        f".c.npz.{_dead_pid()}.0badc0de.tmp": False,  # a killed writer's: removed
        f".c.npz.{os.getpid()}.0123abcd.tmp": True,  # a live writer's: kept
        ".c.npz.k3j4h5g6.tmp": False,  # no pid (an older version's), an hour old: removed
        ".c.npz.q1w2e3r4.tmp": True,  # no pid, fresh: may still be written, kept
        f".other.npz.{_dead_pid()}.0badc0de.tmp": True,  # another file's: not this write's
    }
    for name in strays:
        (tmp_path / name).write_bytes(b"partial")
    os.utime(tmp_path / ".c.npz.k3j4h5g6.tmp", (old, old))
    sk.skylark_cnn((1, 8, 8)).save(ckpt)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"c.npz", *(n for n, kept in strays.items() if kept)}


def _records_and_summary(losses, framework_losses, dtype="float64"):
    params = {"0.weight": np.zeros(3)}
    records = [
        {"framework": name, "status": "ok", "losses": list(ls),
         "accuracies": [0.5] * len(ls), "seconds": 0.1, "test_accuracy": 0.5,
         "params": params, "versions": {}, "probes": [{"0.weight": 0.0}] * len(ls)}
        for name, ls in (("numpy", losses), ("torch", framework_losses))
    ]
    recipe = argparse.Namespace(optimizer=optimizer_config("sgd", 1e6), clip=None,
                                schedule=Schedule(), lrs=[1e6] * len(losses), invariant=())
    args = argparse.Namespace(model="skylark", label_smoothing=0.0, dtype=dtype, batch_size=2,
                              seed=0, recipe=recipe)
    return records, cmp.summarize(records, args, SimpleNamespace(name="t"))


def test_lockstep_bar_is_relative_to_large_losses():
    """Losses of 1e221 agreeing to 5e-16 relative are in lockstep (an absolute 1e-9 bar said
    FAIL); a gap of 1e-8 relative is not; near 0 the bar stays 1e-9 absolute."""
    ref = np.array([2.3, 1e100, 1e221])
    _, s = _records_and_summary(ref, ref * (1 + 5e-16))
    assert s["frameworks"]["torch"]["lockstep"] is True
    _, s = _records_and_summary(ref, ref * (1 + 1e-8))
    assert s["frameworks"]["torch"]["lockstep"] is False
    _, s = _records_and_summary([1e-3, 1e-5], [1e-3 + 2e-9, 1e-5])
    assert s["frameworks"]["torch"]["lockstep"] is False


def _old_set(out):
    out.mkdir(exist_ok=True)
    for name in results.RESULT_FILES:
        (out / name).write_text("old run")


def test_results_untouched_when_killed_before_the_swap(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _old_set(out)
    records, summary = _records_and_summary([2.0, 1.0], [2.0, 1.0])

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmp, "plot", killed)  # e.g. Ctrl-C while the figure is drawn
    with pytest.raises(KeyboardInterrupt):
        cmp.write_results(out, records, summary)
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        n: "old run" for n in results.RESULT_FILES}


def test_results_never_mix_two_runs(tmp_path, monkeypatch):
    """Killed during the swap: part of the new set, no summary.json, nothing of the old run.
    Without matplotlib the old curves.png goes too."""
    out = tmp_path / "out"
    _old_set(out)
    records, summary = _records_and_summary([2.0, 1.0], [2.0, 1.0])
    real_replace = os.replace

    def killed_after_first(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        cmp.write_results(out, records, summary)
    assert [p.name for p in out.iterdir()] == ["curves.csv"]  # and no temporary
    assert (out / "curves.csv").read_text().startswith("framework,step")
    monkeypatch.setattr(results.os, "replace", real_replace)
    _old_set(out)
    monkeypatch.setattr(cmp, "plot", lambda records, summary: None)  # no matplotlib
    cmp.write_results(out, records, summary)
    assert sorted(p.name for p in out.iterdir()) == ["curves.csv", "summary.json"]  # swept too
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
