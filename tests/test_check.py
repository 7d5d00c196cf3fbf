"""`skylark check` (reference.check) can fail, and says where: planted bugs, exit codes, --json."""

from __future__ import annotations

import json

import pytest
from conftest import REFERENCE_FRAMEWORKS

from reference import check, harness, runners


def run_json(tmp_path, *argv):
    path = tmp_path / "check.json"
    code = check.main([*argv, "--json", str(path), "--quiet"])
    return code, json.loads(path.read_text())


def needs(framework):
    for mod in REFERENCE_FRAMEWORKS[framework][1]:
        pytest.importorskip(mod, reason=f"{framework} needs {mod}")


# planted bug, framework, dtype -> first diverging: forward, loss pass, cotangent pass.
# dense_hwc: out.2 (Flatten) still matches, the Dense output is the first wrong tensor; in the
# cotangent pass d.3.weight = cot^T x is right and d.out.2 = W^T cot is the first wrong one.
# kernel_transposed: the conv output; in the cotangent pass d.3.weight = cot^T out.2 sees it.
# loss_sum: every activation is right, the loss is N times too large, and so is d.out.3 of the
# loss pass; the cotangent pass never touches the loss, so it stays clean.
PLANTED = [
    ("dense_hwc", "tf", "float64", ("out.3", "loss/d.out.3", "cot/d.out.2")),
    ("dense_hwc", "keras", "float32", ("out.3", "loss/d.out.3", "cot/d.out.2")),
    ("kernel_transposed", "torch", "float64", ("out.0", "loss/d.out.3", "cot/d.3.weight")),
    ("kernel_transposed", "keras", "float32", ("out.0", "loss/d.out.3", "cot/d.3.weight")),
    ("loss_sum", "torch", "float32", ("loss", "loss/d.out.3", None)),
    ("loss_sum", "tf", "float64", ("loss", "loss/d.out.3", None)),
    ("loss_sum", "keras-jax", "float64", ("loss", "loss/d.out.3", None)),
]


@pytest.mark.parametrize("plant, framework, dtype, first", PLANTED,
                         ids=[f"{p}-{f}-{d}" for p, f, d, _ in PLANTED])
def test_planted_bug_fails_and_names_first_divergence(tmp_path, plant, framework, dtype, first):
    needs(framework)
    code, report = run_json(tmp_path, "--frameworks", framework, "--dtype", dtype,
                            "--plant", f"{framework}={plant}", "--batch", "4")
    r = report["frameworks"][framework]
    assert code == 1 and r["status"] == "FAIL", r["status"]
    got = (r["first_forward"], r["first_backward"]["loss"], r["first_backward"]["cot"])
    assert got == first, f"{plant} in {framework}: first divergences {got}, expected {first}"


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
], ids=["framework", "dtype", "batch", "input", "seed", "empty", "plant"])
def test_bad_usage_exits_2(argv, capsys):
    assert check.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_missing_framework_fails_unless_allowed(tmp_path, monkeypatch, capsys):
    def not_installed(framework, *modules):
        if framework == "keras-jax":
            raise runners.FrameworkUnavailable(framework, "jax is not installed: pip install jax")

    monkeypatch.setattr(runners, "require", not_installed)
    code, report = run_json(tmp_path, "--frameworks", "keras-jax")
    assert code == 1 and report["frameworks"]["keras-jax"]["status"] == "MISSING"
    assert "MISSING" in capsys.readouterr().err
    code, report = run_json(tmp_path, "--frameworks", "keras-jax", "--allow-missing")
    assert code == 0 and not report["ok"]


def test_float32_budget_is_derived_and_covers_measured_errors():
    """The budget grows with the reduction length: the Dense (1352 inputs) gets more than the
    3x3 conv (9), and loss-pass gradients more than the forward tensors they come from."""
    case = harness.Case.from_model(harness.default_model("random", "float32")[0])
    b = case.budget
    rel = {k: b[k] / max(abs(case.ref[k]).max(), 1e-30) for k in ("out.0", "out.3")}
    assert rel["out.3"] > rel["out.0"] > 0
    assert b["cot/d.out.3"] == 0  # the cotangent itself: passed through exactly
    assert harness.K_SAFETY <= 2
