"""--resume continues the same run or refuses; hand-made checkpoints; a lost learning rate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from idxdata import idx_folder, one_line_error

import skylark as sk
from skylark.cli import main
from skylark.data import Dataset, load_dataset
from skylark.model import CheckpointError, read_checkpoint
from skylark.models import from_config, to_config
from skylark.train import fit

BASE = dict(epochs=1, batch_size=16, lr=0.1, momentum=0.5, seed=0)
NET = [{"kind": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3},
       {"kind": "relu"}, {"kind": "flatten"},
       {"kind": "dense", "in_features": 72, "out_features": 10}]


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset(idx_folder(tmp_path_factory.mktemp("data") / "d"))


def net(dtype="float32", kinds=None):
    return from_config(kinds or NET, dtype=dtype, seed=0)


def run(data, ckpt, model=None, **kw):
    args = {**BASE, **kw}
    return fit(model or net(), data, save=ckpt, progress=False, log=quiet, **args)


def test_checkpoint_records_the_architecture_and_the_run(data, tmp_path):
    ckpt = tmp_path / "c.npz"
    model = net()
    run(data, ckpt, model)
    _, meta, _ = read_checkpoint(ckpt)
    assert meta["model"] == json.loads(json.dumps(to_config(model)))
    assert meta["dtype"] == "float32" and meta["lr"] == 0.1 and meta["batch_size"] == 16
    assert meta["momentum"] == 0.5 and meta["seed"] == 0 and len(meta["data_sha256"]) == 64
    assert from_config(meta["model"]).load(ckpt)["epoch"] == 1  # rebuilt from the record


def _other_data(tmp_path):
    """The same name and shape, other images."""
    return load_dataset(idx_folder(tmp_path / "other" / "d", seed=1))


CHANGES = {
    "lr": (dict(lr=0.05), "lr 0.1 -> 0.05"),
    "batch_size": (dict(batch_size=8), "batch_size 16 -> 8"),
    "momentum": (dict(momentum=0.9), "momentum 0.5 -> 0.9"),
    "seed": (dict(seed=3), "seed 0 -> 3"),
    "dtype": (dict(model="float64"), "dtype 'float32' -> 'float64'"),
    "dataset": (dict(data="other"), "dataset contents"),
    "model": (dict(model="tanh"), "model (architecture differs)"),
    "loss": (dict(loss={"label_smoothing": 0.1}), "loss"),
}


def _changed_run(data, tmp_path, ckpt, change: dict, allow: bool):
    change = dict(change)
    kinds = [*NET[:1], {"kind": "tanh"}, *NET[2:]] if change.get("model") == "tanh" else None
    model = net(dtype="float64" if change.pop("model", None) == "float64" else "float32",
                kinds=kinds)
    if change.pop("data", None):
        data = _other_data(tmp_path)
    return run(data, ckpt, model, **{**change, "epochs": 2}, resume=ckpt, allow_changed=allow)


@pytest.mark.parametrize("key", list(CHANGES))
def test_resume_refuses_a_changed_setting(key, data, tmp_path):
    ckpt = tmp_path / "c.npz"
    run(data, ckpt)
    before = ckpt.read_bytes()
    change, named = CHANGES[key]
    with pytest.raises(CheckpointError, match="--allow-changed") as e:
        _changed_run(data, tmp_path, ckpt, change, allow=False)
    assert named in str(e.value)
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("key", ["lr", "dataset", "model"])
def test_allow_changed_records_the_change(key, data, tmp_path):
    ckpt = tmp_path / "c.npz"
    run(data, ckpt)
    _changed_run(data, tmp_path, ckpt, CHANGES[key][0], allow=True)
    _, meta, _ = read_checkpoint(ckpt)
    assert meta["epoch"] == 2
    [change] = meta["changes"]
    assert change["at_epoch"] == 1
    assert {k for k in change if k != "at_epoch"} == ({"data_sha256"} if key == "dataset"
                                                      else {key})


def test_cli_resume_with_another_lr(tmp_path, capsys):
    data_dir, ckpt = idx_folder(tmp_path / "d"), tmp_path / "c.npz"
    common = ["train", "--dataset", str(data_dir), "--quiet", "--save", str(ckpt)]
    assert main([*common, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*common, "--epochs", "2", "--resume", str(ckpt), "--lr", "0.1"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "lr 0.2 -> 0.1" in line and "--allow-changed" in line
    assert main([*common, "--epochs", "2", "--resume", str(ckpt), "--lr", "0.1",
                 "--allow-changed"]) == 0
    assert "resuming with changed settings (recorded in the checkpoint): lr 0.2 -> 0.1" in \
        capsys.readouterr().out
    assert read_checkpoint(ckpt)[1]["changes"][0]["lr"] == {"from": 0.2, "to": 0.1}


def _rewrite(ckpt, meta=None, extra=None):
    """The checkpoint at `ckpt` with its metadata and/or momentum buffers replaced."""
    with np.load(ckpt) as f:
        arrays = {k: f[k] for k in f.files}
    if meta is not None:
        arrays["__skylark_meta__"] = np.array(meta if isinstance(meta, str) else json.dumps(meta))
    for k, v in (extra or {}).items():
        arrays["__extra__/" + k] = v
    np.savez(ckpt, **arrays)


def _bad_checkpoints(meta, w):
    hist = meta["history"]
    return {
        "metadata not JSON": (dict(meta="{epoch: 1"), "not a JSON object"),
        "metadata a list": (dict(meta=[1, 2]), "not a JSON object"),
        "epoch a string": (dict(meta={**meta, "epoch": "1"}), "epoch='1'"),
        "epoch negative": (dict(meta={**meta, "epoch": -1}), "epoch=-1"),
        "history missing": (dict(meta={k: v for k, v in meta.items() if k != "history"}),
                            "'history'"),
        "history of strings": (dict(meta={**meta, "history": {**hist, "loss": ["a"]}}),
                               "'history'"),
        "history too short": (dict(meta={**meta, "history": {**hist, "test_accuracy": []}}),
                              "0 test accuracies"),
        "momentum of an unknown parameter": (dict(extra={"9.weight": w}), "Received: '9.weight'"),
        "momentum misshaped": (dict(extra={"0.weight": w[:1]}), "wrong shape"),
        "momentum complex": (dict(extra={"0.weight": w.astype(complex)}), "real numbers"),
        "momentum nan": (dict(extra={"0.weight": w * np.nan}), "nan or inf"),
        "momentum overflows float32": (dict(extra={"0.weight": np.full(w.shape, 1e300)}),
                                       "overflows float32"),
    }


@pytest.mark.parametrize("case", list(_bad_checkpoints({"history": {}}, np.zeros(1))))
def test_hand_made_checkpoints_give_one_line(case, tmp_path, capsys):
    data_dir, ckpt = idx_folder(tmp_path / "d"), tmp_path / "c.npz"
    argv = ["train", "--dataset", str(data_dir), "--quiet", "--momentum", "0.5"]
    assert main([*argv, "--epochs", "1", "--save", str(ckpt)]) == 0
    _, meta, extra = read_checkpoint(ckpt)
    kwargs, named = _bad_checkpoints(meta, extra["0.weight"])[case]
    _rewrite(ckpt, **kwargs)
    capsys.readouterr()
    assert main([*argv, "--epochs", "2", "--resume", str(ckpt)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert named in line and str(ckpt) in line


@pytest.mark.parametrize("dtype, option, value, rounded", [
    ("float32", "lr", "1e-320", "0.0"),
    ("float32", "lr", "1e39", "inf"),
    ("float32", "momentum", "0.999999999", "1.0"),
    ("float64", "lr", "1e-330", None),  # argparse already reads 0: rejected as not > 0
])
def test_a_value_the_dtype_loses_is_refused(dtype, option, value, rounded, tmp_path, capsys):
    data_dir = idx_folder(tmp_path / "d")
    argv = ["--dataset", str(data_dir), "--dtype", dtype, f"--{option}", value, "--quiet"]
    if rounded is None:
        with pytest.raises(SystemExit) as e:
            main(["train", *argv])
        assert e.value.code == 2
        return
    for command in (["train", "--epochs", "1"], ["compare", "--steps", "1", "--frameworks",
                                                 "torch", "--out", str(tmp_path / "o")]):
        assert main([*command, *argv]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert f"rounds to {rounded} in {dtype}" in line and f"{option}={float(value)!r}" in line


def test_fit_refuses_an_lr_that_underflows():
    model = sk.skylark_cnn((1, 8, 8))
    before = model.state()["0.weight"].copy()
    x = np.zeros((4, 1, 8, 8), np.float32)
    d = Dataset("t", x, np.zeros(4, np.int64), x, np.zeros(4, np.int64), 10)
    with pytest.raises(ValueError, match=r"lr rounds to 0.0 in float32.*Received: lr=1e-320"):
        fit(model, d, epochs=1, batch_size=2, lr=1e-320, progress=False, log=quiet)
    np.testing.assert_array_equal(model.state()["0.weight"], before)
