"""`skylark compare`: lockstep training across every framework, and what it writes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from reference.commands import compare as cmp
from reference.frameworks import NAMES
from reference.runners.runner import FrameworkUnavailable
from skylark.cli import main

LOCKSTEP_STEPS = 200


@pytest.fixture(scope="module")
def lockstep_run(tmp_path_factory):
    """One float64 run of every framework over 200+ steps (keras workers started once)."""
    out = tmp_path_factory.mktemp("compare")
    code = main(["compare", "--frameworks", "all", "--steps", str(LOCKSTEP_STEPS),
                 "--dtype", "float64", "--out", str(out), "--quiet"])
    return code, out, json.loads((out / "summary.json").read_text())


def test_every_framework_ran_and_is_in_lockstep_float64(lockstep_run):
    """Every step's loss within 1e-9 of numpy's, for every framework (none may be missing:
    CI installs all of them)."""
    code, _, summary = lockstep_run
    assert code == 0
    assert list(summary["frameworks"]) == list(NAMES)
    for name, s in summary["frameworks"].items():
        assert s["status"] == "ok", (name, s)
        if s.get("forward_only"):  # onnxruntime: numpy's trained weights, predictions only
            assert s["max_logit_diff"] <= cmp.LOCKSTEP_ATOL64, (name, s["max_logit_diff"])
            assert s["prediction_agreement"] == 1.0 and s["lockstep"] is True, (name, s)
            assert "max_loss_diff" not in s  # nothing trained, nothing claimed
            continue
        assert s["max_loss_diff"] <= cmp.LOCKSTEP_ATOL64, (name, s["max_loss_diff"])
        assert s.get("lockstep") is (None if name == "numpy" else True)  # numpy: the reference
        # weights after 200 steps agree too; float64 accumulation order: well under 1e-9
        assert s["final_max_weight_diff"] <= 1e-9, (name, s["final_max_weight_diff"])
    accs = {s["final_test_accuracy"] for s in summary["frameworks"].values()}
    assert len(accs) == 1  # the same model gives the same predictions


def test_compare_writes_csv_png_summary(lockstep_run):
    _, out, summary = lockstep_run
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    trained = [n for n, s in summary["frameworks"].items() if not s.get("forward_only")]
    assert len(rows) == LOCKSTEP_STEPS * len(trained)
    assert set(rows[0]) == {"framework", "step", "lr", "loss", "accuracy"}
    assert {float(r["lr"]) for r in rows} == {0.2}  # the default: constant lr
    numpy_rows = [r for r in rows if r["framework"] == "numpy"]
    assert [int(r["step"]) for r in numpy_rows] == list(range(1, LOCKSTEP_STEPS + 1))
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    for s in summary["frameworks"].values():
        assert {"final_test_accuracy", "seconds", "versions"} <= set(s)
        assert {"prediction_agreement", "max_logit_diff"} <= set(s) if s.get("forward_only") \
            else {"max_loss_diff", "final_max_weight_diff"} <= set(s)
    assert summary["steps"] == LOCKSTEP_STEPS and summary["dtype"] == "float64"


def test_float32_drift_is_measured_not_hidden(tmp_path):
    code = main(["compare", "--frameworks", "numpy,torch", "--steps", "60", "--dtype", "float32",
                 "--out", str(tmp_path), "--quiet"])
    s = json.loads((tmp_path / "summary.json").read_text())["frameworks"]["torch"]
    assert code == 0 and "lockstep" not in s  # no float64 verdict on a float32 run
    assert 0 < s["max_loss_diff"] < 1e-3  # drifts (accumulation order), stays close


def test_missing_framework_is_reported_not_dropped(tmp_path, monkeypatch, capsys):
    real = cmp.get_runner

    def fake(name, plant=None):
        if name == "tf":
            raise FrameworkUnavailable("tf", "tensorflow is not installed: pip install ...")
        return real(name, plant)

    monkeypatch.setattr(cmp, "get_runner", fake)
    code = main(["compare", "--frameworks", "numpy,tf", "--steps", "5", "--out", str(tmp_path),
                 "--quiet"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frameworks"]["tf"]["status"] == "missing"
    captured = capsys.readouterr()
    assert "MISSING" in captured.out and "MISSING" in captured.err
    assert code == 0  # the frameworks that are installed ran fine


def test_schedule_is_shared_and_spans_epochs():
    plan = cmp.schedule(100, 32, seed=0, epochs=None, steps=10)
    assert len(plan) == 10 and [e for e, _ in plan] == [0] * 4 + [1] * 4 + [2] * 2
    np.testing.assert_array_equal(np.sort(np.concatenate([i for _, i in plan[:4]])),
                                  np.arange(100))


def exit_status(argv) -> int:
    """What `skylark` exits with: main's return value, or the SystemExit code of argparse (which
    now parses --frameworks itself, with the parser shared with `skylark check`)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv", [["--frameworks", "numpy,caffe"], ["--dataset", "nope"],
                                  ["--frameworks", "numpy"]])
def test_compare_bad_usage(argv, capsys, tmp_path):
    assert exit_status(["compare", *argv, "--out", str(tmp_path)]) == 2
    assert "Received" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "-1"], "--lr: expected a finite number > 0. Received: '-1'"),
        (["--lr", "nan"], "Received: 'nan'"),
        (["--momentum", "1.5"], "--momentum: expected a number in [0, 1). Received: '1.5'"),
        (["--seed", "-1"], "--seed: expected an integer >= 0. Received: '-1'"),
        (["--steps", "x"], "--steps: expected an integer >= 1. Received: 'x'"),
        (["--epochs", "2", "--steps", "3"], "not allowed with argument"),
    ],
)
def test_compare_bad_values_exit_2_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare", *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_an_optimizer_a_framework_cannot_express_is_reported_not_run(tmp_path, capsys):
    """RMSprop on raw TF: not expressible (eps inside the root), said so, not a failure."""
    code = main(["compare", "--frameworks", "torch,tf", "--steps", "5", "--optimizer", "rmsprop",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frameworks"]["torch"]["lockstep"] is True
    tf = summary["frameworks"]["tf"]
    assert tf["status"] == "not expressible" and "eps inside the square root" in tf["reason"]
    captured = capsys.readouterr()
    assert "tf                N/A      not expressible" in captured.out
    assert "NOT EXPRESSIBLE" in captured.err


@pytest.mark.slow
def test_adamw_schedule_clip_on_batchnorm_and_dropout_in_lockstep(tmp_path):
    """vgg-bn (BatchNorm in training mode, dropout with shared masks) with AdamW, a cosine
    schedule with warmup and clipping: every in-process framework in lockstep, weights too."""
    code = main(["compare", "--model", "vgg-bn", "--frameworks", "torch,tf,jax", "--steps", "12",
                 "--optimizer", "adamw", "--lr", "3e-3", "--schedule", "cosine", "--warmup", "3",
                 "--clip-norm", "1.0", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["optimizer"]["name"] == "adamw" and summary["clip"]["max_norm"] == 1.0
    for name in ("torch", "tf", "jax"):
        s = summary["frameworks"][name]
        assert s["lockstep"] is True and s["first_divergence"] is None, (name, s)
        assert s["final_max_weight_diff"] <= 1e-9, (name, s["final_max_weight_diff"])


def test_loss_invariant_state_is_the_shift_batchnorm_subtracts():
    """A bias only BatchNorm reads (vgg-bn), the beta of a linear bottleneck whose output reaches
    only 1x1 convs and BatchNorms (mobilenet-v2, efficientnet, shufflenet's branches): their
    gradient is 0 in exact arithmetic, so they (and the running means that average them in)
    are reported outside the weight verdict. A shift that reaches the loss by any other road
    (a ReLU, a padded conv, the logits) is never left out."""
    from reference.spec import describe, loss_invariant
    from skylark.models import build_model

    def invariant(name):
        return loss_invariant(describe(build_model(name, (1, 28, 28), num_classes=10)))

    assert invariant("vgg-bn") == ["0.bias", "1.running_mean", "3.bias", "4.running_mean"]
    assert invariant("mobilenet-v2") == [
        "features.1.conv.3.bias", "features.2.conv.0.1.running_mean",
        "features.3.1.running_mean", "features.2.conv.3.bias"]
    for name in ("skylark", "lenet5", "resnet", "densenet", "inception"):
        assert invariant(name) == [], name
    conv = {"kind": "conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 1}
    head = [{"kind": "flatten", "name": "f"},
            {"kind": "dense", "in_features": 50, "out_features": 3, "name": "fc"}]
    bn = {"kind": "batchnorm2d", "num_features": 2}
    base = [{"kind": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3,
             "name": "c"}, {**bn, "name": "bn"}]
    # through a 1x1 conv into a BatchNorm: absorbed
    assert loss_invariant([*base, {**conv, "name": "p"}, {**bn, "name": "bn2"}, *head]) == [
        "c.bias", "bn.running_mean", "bn.bias", "bn2.running_mean", "p.bias"]
    # a padded 3x3 conv makes the borders differ: not absorbed
    assert loss_invariant([*base, {**conv, "kernel_size": 3, "padding": 1, "name": "p"},
                           {**bn, "name": "bn2"}, *head]) == ["c.bias", "bn.running_mean",
                                                              "p.bias", "bn2.running_mean"]
    # the shift also reaches the loss through an Add into the logits' path: kept
    assert loss_invariant([*base, {"kind": "add", "inputs": ["c", "bn"], "name": "sum"},
                           *head]) == []
