"""NumPy training: accuracy bars, checkpoints, resume, divergence, and the CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest

import skylark as sk
from skylark.cli import main
from skylark.data import load_dataset
from skylark.data.datasets import FASHION_MNIST_DIR
from skylark.train import DivergedError, fit


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_default_accuracy(digits):
    """The CLI defaults (10 epochs, batch 32, lr 0.2) reach >= 0.85 on digits' test split."""
    model = sk.skylark_cnn(input_shape=digits.input_shape)
    hist = fit(model, digits, epochs=10, batch_size=32, lr=0.2, progress=False, log=quiet)
    assert hist.test_accuracy[-1] >= 0.85, hist.test_accuracy


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR),
                    reason="apt-get install dataset-fashion-mnist for this test")
def test_fashion_mnist_three_epochs():
    data = load_dataset("fashion-mnist")
    model = sk.skylark_cnn(input_shape=data.input_shape)
    hist = fit(model, data, epochs=3, batch_size=32, lr=0.2, progress=False, log=quiet)
    assert hist.test_accuracy[-1] >= 0.85, hist.test_accuracy


def test_resume_matches_uninterrupted_run(digits, tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    a = sk.skylark_cnn(input_shape=digits.input_shape, dtype="float64")
    fit(a, digits, epochs=3, batch_size=64, lr=0.3, momentum=0.9, progress=False, log=quiet)
    b = sk.skylark_cnn(input_shape=digits.input_shape, dtype="float64")
    fit(b, digits, epochs=2, batch_size=64, lr=0.3, momentum=0.9, save=ckpt, progress=False,
        log=quiet)
    c = sk.skylark_cnn(input_shape=digits.input_shape, seed=99, dtype="float64")
    hist = fit(c, digits, epochs=3, batch_size=64, lr=0.3, momentum=0.9, save=ckpt, resume=ckpt,
               progress=False, log=quiet)
    assert len(hist.test_accuracy) == 3
    for k, p in a.params().items():  # same batches, same momentum buffers: bit-identical
        np.testing.assert_array_equal(c.params()[k], p)


def test_divergence_names_step_and_keeps_checkpoint(digits, tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    model = sk.skylark_cnn(input_shape=digits.input_shape)
    fit(model, digits, epochs=1, batch_size=64, lr=0.1, save=ckpt, progress=False, log=quiet)
    good = ckpt.read_bytes()
    with pytest.raises(DivergedError, match=r"non-finite .* at epoch 2, step \d+ .*kept at"):
        fit(model, digits, epochs=2, batch_size=64, lr=1e30, save=ckpt, resume=ckpt,
            allow_changed=True, progress=False, log=quiet)
    assert ckpt.read_bytes() == good


def test_divergence_before_any_checkpoint_says_none_was_written(digits, tmp_path):
    model = sk.skylark_cnn(input_shape=digits.input_shape)
    with pytest.raises(DivergedError, match=r"at epoch 1, step .*No checkpoint was written"):
        fit(model, digits, epochs=1, batch_size=64, lr=1e30, save=tmp_path / "c.npz",
            progress=False, log=quiet)
    assert not list(tmp_path.iterdir())


def test_checkpoint_has_a_normal_file_mode(tmp_path):
    path = sk.skylark_cnn().save(tmp_path / "c.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_cli_train_and_resume(tmp_path, capsys):
    ckpt = str(tmp_path / "c.npz")
    assert main(["train", "--epochs", "1", "--quiet", "--save", ckpt]) == 0
    out = capsys.readouterr()
    assert "final test accuracy" in out.out and "epoch 1/1" in out.out
    assert main(["train", "--epochs", "2", "--quiet", "--save", ckpt, "--resume", ckpt]) == 0
    assert "resumed from" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "nope"], "Received: dataset='nope'"),
        (["train", "--resume", "/nonexistent.npz"], "no checkpoint"),
    ],
)
def test_cli_train_errors_exit_2(argv, message, capsys):
    assert main([*argv, "--quiet", "--epochs", "1"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--lr", "0"], ["train", "--epochs", "0"], ["nope"]])
def test_cli_bad_usage_exits_2(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_cli_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and sk.__version__ in capsys.readouterr().out
    assert main([]) == 2
    assert "compare" in capsys.readouterr().out
