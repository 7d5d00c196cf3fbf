"""`skylark check` (reference.commands.check) can fail, and says where: planted bugs name the first
diverging tensor, exit codes, --json, --help, a framework that is not installed, numpy alone;
--model (docs/example_model.json through every framework; a bad one exits 2), --mode,
--label-smoothing and --reduction.

The workers behind the keras-* frameworks are tested in test_worker.py, the float32 budget in
test_budgets.py, the harness under the command in test_harness.py.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import framework_param, needs

from reference import harness
from reference.commands import check
from reference.frameworks import COMPARED, FRAMEWORKS
from reference.runners.runner import FrameworkUnavailable, require_installed
from skylark.cli import main as cli_main


def run_json(tmp_path, *argv):
    path = tmp_path / "check.json"
    code = check.main([*argv, "--json", str(path), "--quiet"])
    return code, json.loads(path.read_text())


# planted bug, framework, dtype, input -> first diverging: forward, loss pass, cotangent pass.
# dense_hwc: out.2 (Flatten) still matches, the Dense output is the first wrong tensor; in the
# cotangent pass d.3.weight = cot^T x is right and d.out.2 = W^T cot is the first wrong one.
# kernel_transposed: the conv output; in the cotangent pass d.3.weight = cot^T out.2 sees it.
# loss_sum: every activation is right, the loss is N times too large, and so is d.out.3 of the
# loss pass; the cotangent pass never touches the loss, so it stays clean.
# pool_last_max (torch sends max-pool ties to the last maximum): every forward value is the same;
# d.out.1 (the pool output's gradient) too; the pool's input gradient d.out.0 is the first wrong.
PLANTED = [
    ("dense_hwc", "tf", "float64", "random", ("out.3", "loss/d.out.3", "cot/d.out.2")),
    ("dense_hwc", "tf", "float64", "ties", ("out.3", "loss/d.out.3", "cot/d.out.2")),
    ("dense_hwc", "keras", "float32", "random", ("out.3", "loss/d.out.3", "cot/d.out.2")),
    ("dense_hwc", "keras", "float32", "ties", ("out.3", "loss/d.out.3", "cot/d.out.2")),
    ("kernel_transposed", "torch", "float64", "random",
     ("out.0", "loss/d.out.3", "cot/d.3.weight")),
    ("kernel_transposed", "keras", "float32", "random",
     ("out.0", "loss/d.out.3", "cot/d.3.weight")),
    ("loss_sum", "torch", "float32", "random", ("loss", "loss/d.out.3", None)),
    ("loss_sum", "tf", "float64", "random", ("loss", "loss/d.out.3", None)),
    ("loss_sum", "keras-jax", "float64", "random", ("loss", "loss/d.out.3", None)),
    ("pool_last_max", "torch", "float64", "ties", (None, "loss/d.out.0", "cot/d.out.0")),
    ("pool_last_max", "torch", "float32", "ties", (None, "loss/d.out.0", "cot/d.out.0")),
    ("pool_last_max", "torch", "float64", "digits", (None, "loss/d.out.0", "cot/d.out.0")),
]


@pytest.mark.parametrize("plant, framework, dtype, kind, first", [
    framework_param(f, p, f, d, i, first, id=f"{p}-{f}-{d}-{i}") for p, f, d, i, first in PLANTED
])
def test_planted_bug_fails_and_names_first_divergence(tmp_path, plant, framework, dtype, kind,
                                                      first):
    needs(framework)
    code, report = run_json(tmp_path, "--frameworks", framework, "--dtype", dtype, "--input", kind,
                            "--plant", f"{framework}={plant}", "--batch", "4")
    r = report["frameworks"][framework]
    assert code == 1 and r["status"] == "FAIL", r["status"]
    got = (r["first_forward"], r["first_backward"]["loss"], r["first_backward"]["cot"])
    assert got == first, f"{plant} in {framework}: first divergences {got}, expected {first}"


@pytest.mark.torch
def test_random_input_has_no_ties_for_pool_last_max(tmp_path):
    """The tie plant changes nothing without ties: what catches it is the ties input."""
    needs("torch")
    code, report = run_json(tmp_path, "--frameworks", "torch", "--dtype", "float64",
                            "--plant", "torch=pool_last_max")
    assert code == 0, report["frameworks"]["torch"]["first_backward"]


@pytest.mark.torch
def test_clean_run_passes_with_fingerprint_and_table(tmp_path, capsys):
    needs("torch")
    code, report = run_json(tmp_path, "--frameworks", "torch", "--dtype", "float64",
                            "--input", "ties")
    assert code == 0 and report["ok"]
    fp = report["fingerprint"]
    assert fp["dtype"] == "float64" and "torch" in fp["frameworks"]["torch"]
    assert "torch_threads" in fp and fp["numpy"]
    rows = report["frameworks"]["torch"]["rows"]
    assert {r["tensor"] for r in rows} >= {"out.0", "loss", "loss/d.0.weight", "cot/d.input"}
    assert all(r["max_abs"] <= r["budget"] for r in rows)
    assert "skylark check passed" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--frameworks", "mxnet"], ["--dtype", "float16"], ["--batch", "0"], ["--input", "noise"],
    ["--seed", "-1"], ["--frameworks", ""], ["--plant", "torch=nonsense"],
    ["--plant", "tf=pool_last_max"],
], ids=["framework", "dtype", "batch", "input", "seed", "empty", "plant", "plant_not_torch"])
def test_bad_usage_exits_2(argv, capsys):
    assert check.main(argv) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("frameworks", ["numpy", "numpy,numpy"])
def test_numpy_alone_is_rejected(frameworks, capsys):
    """numpy is the reference: dropping it left an empty list, and all([]) passed with nothing
    checked."""
    assert check.main(["--frameworks", frameworks]) == 2
    err = capsys.readouterr().err
    assert "numpy is the reference; name at least one other framework. Received:" in err
    with pytest.raises(ValueError, match="numpy is the reference"):
        harness.run_check(["numpy"])


@pytest.mark.parametrize("where", ["missing_folder", "a_directory"])
def test_unwritable_json_exits_2_before_running(tmp_path, where, capsys):
    path = tmp_path / "no" / "check.json" if where == "missing_folder" else tmp_path
    t0 = time.perf_counter()
    assert check.main(["--frameworks", "torch", "--json", str(path)]) == 2
    assert time.perf_counter() - t0 < 5  # refused before any framework starts
    err = capsys.readouterr().err
    assert "error: --json" in err and "Traceback" not in err


@pytest.mark.torch
def test_json_write_failure_exits_2(tmp_path, monkeypatch, capsys):
    needs("torch")
    monkeypatch.setattr(check, "_json_path_error", lambda path: None)  # let it reach open()
    code = check.main(["--frameworks", "torch", "--quiet", "--json",
                       str(tmp_path / "no" / "check.json")])
    assert code == 2 and "cannot write --json" in capsys.readouterr().err


@pytest.mark.parametrize("call", [
    pytest.param(lambda: check.main(["--help"]), id="python_-m_reference.check"),
    pytest.param(lambda: cli_main(["check", "--help"]), id="skylark_check"),
])
def test_help_states_each_default_once_and_the_exit_codes(call, capsys):
    """The same help from the module and from the `skylark check` plugin command."""
    try:
        call()
    except SystemExit as e:
        assert e.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("(default: 4)") == 1 and "(default: all)" in text
    assert "['torch'" not in text  # the frameworks default is shown as 'all', not a list
    assert "exit status: 0" in text and "2 bad usage" in text


def test_missing_framework_fails_unless_allowed(tmp_path, monkeypatch, capsys):
    """keras-jax as if jax were not installed (its table row needs a module that is nowhere):
    MISSING, exit 1; with --allow-missing exit 0 when another framework was compared, yet the
    report is not ok; exit 1 when nothing at all was compared."""
    row = FRAMEWORKS["keras-jax"]
    monkeypatch.setitem(FRAMEWORKS, "keras-jax", replace(row, modules=("jax_is_not_here",)))
    code, report = run_json(tmp_path, "--frameworks", "keras-jax")
    r = report["frameworks"]["keras-jax"]
    assert code == 1 and r["status"] == "MISSING"
    assert r["reason"] == f"jax_is_not_here is not installed: {row.install}"
    assert "MISSING" in capsys.readouterr().err
    code, report = run_json(tmp_path, "--frameworks", "keras-jax,torch", "--allow-missing")
    assert code == 0 and not report["ok"]
    capsys.readouterr()
    code, report = run_json(tmp_path, "--frameworks", "keras-jax", "--allow-missing")
    assert code == 1 and "nothing compared" in capsys.readouterr().out


# --- --model, --mode and the loss options -----------------------------------------------------

EXAMPLE_MODEL = str(Path(__file__).resolve().parents[1] / "docs" / "example_model.json")


def session_runners(monkeypatch, reference_runner, frameworks):
    """Make `skylark check` reuse the session's runners (no worker start-ups per test); only
    the installed frameworks, the others stay MISSING as the command would report them."""
    runners = {}
    for f in frameworks:
        fw = FRAMEWORKS[f]
        try:
            require_installed(fw.name, fw.modules, fw.install)
        except FrameworkUnavailable:
            continue
        runners[f] = reference_runner(f)
    monkeypatch.setattr(check, "run_check", functools.partial(harness.run_check,
                                                              runners=runners))
    return runners


@pytest.mark.slow  # ~12 s: keras-jax compiles every op of a new model on first use
def test_example_model_passes_every_framework_float64_ties(tmp_path, monkeypatch,
                                                           reference_runner):
    """docs/example_model.json holds every mirrored kind (conv "same" with stride 2, BatchNorm,
    LeakyReLU, Tanh, Sigmoid, max-pools with padding, Dropout, Dense); in training mode its
    every tensor, the running statistics among them, is within the float64 bar everywhere."""
    runners = session_runners(monkeypatch, reference_runner, COMPARED)
    if not runners:
        pytest.skip("no reference framework installed")
    code, report = run_json(tmp_path, "--model", EXAMPLE_MODEL, "--dtype", "float64",
                            "--input", "ties", "--allow-missing")
    assert code == 0, {f: (r["status"], r.get("first_forward"), r.get("first_backward"))
                       for f, r in report["frameworks"].items()}
    assert [s["kind"] for s in report["config"]["spec"]][:3] == ["conv2d", "batchnorm2d",
                                                                "leaky_relu"]
    for f in runners:
        r = report["frameworks"][f]
        assert r["status"] == "ok", f
        assert {"stat.1.running_mean", "stat.1.running_var"} <= {row["tensor"] for row in r["rows"]}


@pytest.mark.torch
@pytest.mark.parametrize("argv, config", [
    (["--mode", "eval"], {"mode": "eval"}),
    (["--label-smoothing", "0.1", "--reduction", "sum"],
     {"mode": "train", "loss": {"label_smoothing": 0.1, "reduction": "sum"}}),
], ids=["eval", "smoothing_sum"])
def test_mode_and_loss_options_are_accepted(argv, config, tmp_path, monkeypatch,
                                            reference_runner):
    needs("torch")
    session_runners(monkeypatch, reference_runner, ["torch"])
    code, report = run_json(tmp_path, "--frameworks", "torch", "--model", EXAMPLE_MODEL,
                            "--dtype", "float64", *argv)
    assert code == 0 and report["frameworks"]["torch"]["status"] == "ok"
    assert {k: report["config"][k] for k in config} == config
    stats = [row["tensor"] for row in report["frameworks"]["torch"]["rows"]
             if row["tensor"].startswith("stat.")]
    assert bool(stats) == (config["mode"] == "train")  # eval updates no running statistics


@pytest.mark.parametrize("model, message", [
    ("resnet50", "Received: 'resnet50'"),
    ("nowhere.json", "cannot read the model file 'nowhere.json'"),
    ("no_such_module_xyz:net", "cannot import the model function 'no_such_module_xyz:net'"),
])
def test_bad_model_exits_2_naming_it(model, message, capsys):
    t0 = time.perf_counter()
    assert check.main(["--frameworks", "torch", "--model", model]) == 2
    assert time.perf_counter() - t0 < 5  # refused before any framework starts
    err = capsys.readouterr().err
    assert "skylark check: error:" in err and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--mode", "test"], ["--reduction", "none"],
                                  ["--label-smoothing", "1.5"]])
def test_bad_mode_and_loss_options_exit_2(argv, capsys):
    assert check.main(argv) == 2
    assert "error" in capsys.readouterr().err
