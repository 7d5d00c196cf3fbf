"""`skylark train` and `fit` with an optimizer, a schedule and clipping: resume continues
bit-identically with the optimizer's state, a resume that changes any of them is refused naming
the change, and bad options are one-line errors naming the value."""

from __future__ import annotations

import numpy as np
import pytest
from idxdata import idx_folder, one_line_error

from skylark.cli import main
from skylark.data import load_dataset
from skylark.model import CheckpointError, read_checkpoint
from skylark.models import from_config
from skylark.optim import Schedule, optimizer_config
from skylark.train import fit

NET = [{"kind": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3},
       {"kind": "relu"}, {"kind": "flatten"},
       {"kind": "dense", "in_features": 72, "out_features": 10}]
ADAM = optimizer_config("adam", 0.01, weight_decay=1e-3, amsgrad=True)


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset(idx_folder(tmp_path_factory.mktemp("data") / "d"))


def _fit(data, epochs, optimizer=ADAM, **kw):
    model = from_config(NET, seed=0)
    per_epoch = -(-len(data.x_train) // 16)
    kw.setdefault("schedule", Schedule("cosine", total=3 * per_epoch, warmup=2))
    kw.setdefault("clip", {"max_norm": 0.5, "per_tensor": False})
    fit(model, data, epochs=epochs, batch_size=16, optimizer=optimizer, progress=False,
        log=quiet, **kw)
    return model


@pytest.mark.parametrize("optimizer", [ADAM, optimizer_config("rmsprop", 0.01, momentum=0.5,
                                                              centered=True),
                                       optimizer_config("sgd", 0.1, momentum=0.9,
                                                        nesterov=True)],
                         ids=lambda c: c["name"])
def test_resume_with_adam_schedule_and_clip_is_bit_identical(data, tmp_path, optimizer):
    ckpt = tmp_path / "c.npz"
    straight = _fit(data, 3, optimizer)
    _fit(data, 2, optimizer, save=ckpt)
    _, _, extra = read_checkpoint(ckpt)
    if optimizer["name"] != "sgd":
        assert int(extra["step"]) == 2 * 4  # the step count travels (bias corrections)
    resumed = _fit(data, 3, optimizer, save=ckpt, resume=ckpt)
    for k, v in straight.state().items():
        np.testing.assert_array_equal(v, resumed.state()[k], err_msg=k)


def test_a_lost_optimizer_state_would_show(data, tmp_path):
    """The control: resuming WITHOUT the Adam state does change the weights."""
    ckpt = tmp_path / "c.npz"
    straight = _fit(data, 3)
    _fit(data, 2, save=ckpt)
    model = from_config(NET, seed=0)
    model.load(ckpt)
    per_epoch = -(-len(data.x_train) // 16)
    fresh = from_config(NET, seed=0)
    fresh.load_state(model.state())
    fit(fresh, data, epochs=1, batch_size=16, optimizer=ADAM, progress=False, log=quiet,
        clip={"max_norm": 0.5, "per_tensor": False},
        schedule=Schedule("cosine", total=per_epoch, warmup=2))
    assert any(not np.array_equal(v, fresh.state()[k]) for k, v in straight.state().items())


@pytest.mark.parametrize("change, named", [
    (dict(optimizer=optimizer_config("adamw", 0.01)), "optimizer name 'adam' -> 'adamw'"),
    (dict(optimizer={**ADAM, "betas": [0.8, 0.999]}), "optimizer betas [0.9, 0.999] -> [0.8,"),
    (dict(optimizer={**ADAM, "lr": 0.02}), "lr 0.01 -> 0.02"),
    (dict(clip=None), "clip {'max_norm': 0.5, 'per_tensor': False} -> None"),
    (dict(schedule=Schedule("step", total=12, step_size=4)), "schedule name 'cosine' -> 'step'"),
])
def test_resume_that_changes_the_optimizer_is_refused_naming_it(data, tmp_path, change, named):
    ckpt = tmp_path / "c.npz"
    _fit(data, 1, save=ckpt)
    with pytest.raises(CheckpointError, match="refusing to mix two runs") as e:
        _fit(data, 3, save=ckpt, resume=ckpt, **change)
    assert named in str(e.value)


def test_an_allowed_optimizer_change_starts_its_state_afresh(data, tmp_path):
    ckpt = tmp_path / "c.npz"
    _fit(data, 1, save=ckpt)
    logs = []
    model = from_config(NET, seed=0)
    fit(model, data, epochs=2, batch_size=16, optimizer=optimizer_config("sgd", 0.1,
                                                                          momentum=0.9),
        save=ckpt, resume=ckpt, allow_changed=True, progress=False, log=logs.append)
    assert any("starts afresh" in m for m in logs)
    assert read_checkpoint(ckpt)[1]["changes"][0]["optimizer"]["to"]["name"] == "sgd"


@pytest.mark.parametrize("argv, named", [
    (["--optimizer", "adam", "--betas", "0.9,1.0"], "Received: '0.9,1.0'"),
    (["--optimizer", "adam", "--betas=-0.1,0.9"], "Received: '-0.1,0.9'"),
    (["--optimizer", "adam", "--eps", "0"], "Received: '0'"),
    (["--optimizer", "rmsprop", "--eps=-1e-8"], "Received: '-1e-8'"),
    (["--schedule", "linear"], "invalid choice: 'linear'"),
    (["--schedule", "cosine", "--warmup", "500"], "Received: warmup=500"),
    (["--schedule", "step"], "Received: step_size=None"),
    (["--clip-norm", "0"], "Received: '0'"),
    (["--clip-norm", "-1"], "Received: '-1'"),
    (["--clip-per-tensor"], "Received: --clip-norm=None"),
    (["--optimizer", "sgd", "--betas", "0.9,0.99"], "sgd does not take --betas"),
    (["--optimizer", "adam", "--momentum", "0.9"], "adam does not take --momentum"),
    (["--optimizer", "sgd", "--nesterov"], "nesterov needs momentum > 0"),
    (["--schedule", "cosine", "--step-size", "3"], "--step-size applies to --schedule step"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, named):
    data_dir = idx_folder(tmp_path / "d")
    try:  # argparse's own checks exit 2; the cross-option checks return 2
        code = main(["train", "--dataset", str(data_dir), "--quiet", "--epochs", "2", *argv])
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert named in one_line_error(capsys.readouterr().err)
