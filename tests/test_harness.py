"""The harness under `skylark check` (reference.harness, reference.inputs): the order tensors
are compared in, `compare_tensors` (missing, misshaped, wrongly typed, unsigned and NaN errors
fail), `Case`, `run_check` (numpy itself posing as another framework, so no framework is needed),
the inputs (every reference tensor nonzero; dyadic weights keep 7 bits per tensor)."""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk
from reference import harness
from reference.inputs import INPUTS, all_zero, dyadic_params
from reference.runners.numpy_ref import NumpyRunner
from reference.spec import describe

# --- the order tensors are compared in --------------------------------------------------------


def test_tensor_order_runs_forward_then_each_backward_pass_from_the_logits_down():
    order = harness.tensor_order(describe(sk.skylark_cnn()))
    assert order["forward"] == ["out.0", "out.1", "out.2", "out.3", "loss"]
    for tag in ("loss", "cot"):
        assert order[tag] == [f"{tag}/{t}" for t in (
            "d.out.3", "d.3.weight", "d.3.bias", "d.out.2", "d.out.1", "d.out.0", "d.0.weight",
            "d.input")]


# --- compare_tensors --------------------------------------------------------------------------

ORDER = {"forward": ["out.0", "loss"], "loss": ["loss/d.out.0", "loss/d.input"],
         "cot": ["cot/d.out.0", "cot/d.input"]}


def compared(tamper=None, budget: float = 1.0) -> dict:
    """compare_tensors on made-up float64 tensors, after `tamper(got)` changes the copy."""
    rng = np.random.default_rng(0)
    ref = {t: rng.standard_normal((2, 3)) for part in ORDER.values() for t in part}
    ref["loss"] = np.array(1.5)
    got = {k: v.copy() for k, v in ref.items()}
    if tamper:
        tamper(got)
    return harness.compare_tensors("fw", ref, got, dict.fromkeys(ref, budget), ORDER)


def test_identical_tensors_pass_with_zero_error():
    r = compared()
    assert r["status"] == "ok" and r["first_forward"] is None
    assert r["first_backward"] == {"loss": None, "cot": None}
    assert [row["tensor"] for row in r["rows"]] == [t for part in ORDER.values() for t in part]
    assert all(row["ok"] and row["max_abs"] == 0 and row["note"] == "" for row in r["rows"])


def _set(name, change):
    def tamper(got):
        got[name] = change(got[name])

    return tamper


def _nan(a):
    a = a.copy()
    a[0, 0] = np.nan
    return a


TAMPERED = {  # what the framework returned for loss/d.out.0 -> the row's note, its max_abs
    "missing": (lambda got: got.pop("loss/d.out.0"), "missing", None),
    "shape": (_set("loss/d.out.0", np.transpose), "shape (3, 2) != numpy's (2, 3)", None),
    # float32 values well inside the budget (1.0): the dtype alone fails it (a float64 run
    # computed in float32 somewhere)
    "dtype": (_set("loss/d.out.0", lambda a: a.astype(np.float32)), "dtype float32 != float64",
              pytest.approx(0, abs=1e-6)),
    "below": (_set("loss/d.out.0", lambda a: a - 2.0), "", pytest.approx(2.0)),  # max|a - b|
    "nan": (_set("loss/d.out.0", _nan), "", None),
}


@pytest.mark.parametrize("what", list(TAMPERED))
def test_a_bad_tensor_fails_and_is_the_first_divergence_of_its_pass(what):
    tamper, note, max_abs = TAMPERED[what]
    r = compared(tamper)
    row = next(row for row in r["rows"] if row["tensor"] == "loss/d.out.0")
    assert r["status"] == "FAIL" and not row["ok"] and row["note"] == note
    if what != "nan":
        assert row["max_abs"] == max_abs
    assert r["first_forward"] is None
    assert r["first_backward"] == {"loss": "loss/d.out.0", "cot": None}
    assert [t["tensor"] for t in r["rows"] if not t["ok"]] == ["loss/d.out.0"]


def _inf(a):
    a = a.copy()
    a[0, 0] = np.inf
    return a


def test_an_overflowed_budget_passes_finite_errors_only():
    """A derived float32 bound that outgrew float64 (inf) is still a bound: every finite error
    is within it, and the row says so; an infinite or nan value is not; a nan budget fails."""
    rng = np.random.default_rng(0)
    ref = {t: rng.standard_normal((2, 3)) for part in ORDER.values() for t in part}
    ref["loss"] = np.array(1.5)
    inf = dict.fromkeys(ref, np.inf)
    got = {k: v + 1e30 for k, v in ref.items()}
    r = harness.compare_tensors("fw", ref, got, inf, ORDER)
    assert r["status"] == "ok"
    assert all(row["ok"] and row["note"].startswith("budget overflowed") for row in r["rows"])
    for bad in (_inf, _nan):
        got = {**ref, "loss/d.out.0": bad(ref["loss/d.out.0"])}
        r = harness.compare_tensors("fw", ref, got, inf, ORDER)
        assert r["first_backward"]["loss"] == "loss/d.out.0", bad
    r = harness.compare_tensors("fw", ref, ref, dict.fromkeys(ref, np.nan), ORDER)
    assert r["status"] == "FAIL"
    assert {row["note"] for row in r["rows"]} == {"budget not finite"}


def test_first_divergence_is_the_first_in_order_not_the_worst():
    def tamper(got):
        got["cot/d.out.0"] = got["cot/d.out.0"] + 1.5  # first in the pass, just over budget
        got["cot/d.input"] = got["cot/d.input"] + 100.0

    r = compared(tamper)
    assert r["first_backward"] == {"loss": None, "cot": "cot/d.out.0"}
    assert r["worst"]["tensor"] == "cot/d.input"  # the largest share of its budget


# --- Case and run_check -----------------------------------------------------------------------


def test_case_setup_args_and_batch_drive_a_runner():
    model, input_shape = harness.default_model("ties", "float64")
    case = harness.Case.from_model(model, "ties", 3, 1, "float64", input_shape, dyadic=True)
    assert case.setup_args() == (case.spec, case.state, "float64", input_shape)
    assert case.batch() == (case.x, case.labels, case.cotangent) and case.x.shape[0] == 3
    assert all(np.array_equal(case.state[k], v) for k, v in dyadic_params(model.params()).items())
    runner = NumpyRunner()
    runner.setup(*case.setup_args())
    r = case.compare("numpy", runner.trace(*case.batch()))
    assert r["status"] == "ok" and all(row["max_abs"] == 0 for row in r["rows"])


class _Raises(NumpyRunner):
    def trace(self, x, labels, cotangent, **mode):
        raise RuntimeError("boom")


@pytest.mark.parametrize("kind, weights", [
    ("random", "as initialized"), ("ties", "rounded to 7 significant bits per tensor")])
def test_run_check_passes_numpy_against_itself(kind, weights):
    report = harness.run_check(["torch"], "float64", kind, runners={"torch": NumpyRunner()},
                               log=lambda m: None)
    assert report["ok"] and report["config"]["weights"] == weights
    assert all(row["max_abs"] == 0 for row in report["frameworks"]["torch"]["rows"])
    assert report["config"]["all_zero_reference"] == []


def test_run_check_names_the_first_divergence_of_a_planted_bug():
    """numpy with the loss summed, not averaged, posing as torch (test_check.py plants it in
    the real frameworks)."""
    report = harness.run_check(["torch"], "float32", runners={"torch": NumpyRunner("loss_sum")},
                               log=lambda m: None)
    r = report["frameworks"]["torch"]
    assert not report["ok"] and r["status"] == "FAIL"
    assert (r["first_forward"], r["first_backward"]) == ("loss", {"loss": "loss/d.out.3",
                                                                  "cot": None})


def test_run_check_reports_a_raising_framework_and_keeps_the_others():
    runners = {"tf": _Raises(), "torch": NumpyRunner()}
    report = harness.run_check(["torch", "tf"], runners=runners, log=lambda m: None)
    assert list(report["frameworks"]) == ["torch", "tf"]  # the order asked for
    assert report["frameworks"]["torch"]["status"] == "ok" and not report["ok"]
    assert report["frameworks"]["tf"] == {"framework": "tf", "status": "ERROR",
                                          "reason": "RuntimeError: boom"}


def test_run_check_warns_about_all_zero_reference_tensors():
    model = sk.skylark_cnn((1, 8, 8))
    model.load_params({k: np.zeros_like(v) for k, v in model.params().items()})
    said = []
    report = harness.run_check(["torch"], model=model, input_shape=(1, 8, 8),
                               runners={"torch": NumpyRunner()}, log=said.append)
    zeros = report["config"]["all_zero_reference"]
    assert {"out.0", "out.3", "cot/d.input"} <= set(zeros)
    assert any("WARNING" in m and "proves nothing" in m and "out.0" in m for m in said)


def test_run_check_rejects_an_unknown_framework():
    with pytest.raises(ValueError, match=r"unknown framework.*Received: 'mxnet'"):
        harness.run_check(["torch", "mxnet"], log=lambda m: None)


# --- the inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_reference_tensor_has_a_nonzero_entry(kind, dtype):
    """A match of zeros against zeros proves nothing: on every input, every tensor numpy
    reports for the default net (as run_check builds it) is nonzero somewhere. The old global
    1/64 grid rounded the Dense weights to 0 on ties, zeroing out.3 and every gradient below."""
    model, input_shape = harness.default_model(kind, dtype)
    case = harness.Case.from_model(model, kind, 4, 0, dtype, input_shape,
                                   dyadic=kind != "random")
    assert all_zero(case.ref) == []
    assert set(case.ref) == {t for part in case.order.values() for t in part}


def test_dyadic_params_keep_seven_bits_per_tensor():
    params = {"w": np.array([3e-3, -1.23456e-3, 7e-6]), "b": np.zeros(3), "c": np.array([0.3])}
    got = dyadic_params(params)
    assert np.all(got["b"] == 0) and got["c"][0] == np.round(0.3 * 2**8) / 2**8
    scale = 2.0 ** (7 - np.ceil(np.log2(3e-3)))  # 3e-3 * scale in (64, 128]
    assert 64 < 3e-3 * scale <= 128
    np.testing.assert_array_equal(got["w"] * scale, np.round(params["w"] * scale))
    assert abs(got["w"][1] / params["w"][1] - 1) < 2**-6  # ~7 significant bits survive
