"""Every bar, at its edge: an error just above it fails, one just below passes, at the bar
functions themselves and end to end, in every place a bar is applied:

- `skylark check` float64: max|a - b| <= 1e-10 * max(1, max|b|) per tensor;
- `skylark check` float32: the derived budget 2 * eps32 * n_reduce * magnitude per tensor;
- `skylark compare` float64 lockstep: |loss - numpy's| <= 1e-9 * max(1, |numpy's|) each step.

The expected bars are written here from the documented policy (docs/design.md), not read from
reference.budgets, so a loosened constant or formula fails these tests whatever else changes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs
from planting import SMALL_INPUT as INPUT_SHAPE
from planting import Planted, planted, small_net

import skylark as sk
from reference import harness
from reference.budgets import float64_budgets
from reference.commands import compare as cmp
from reference.harness import Case
from skylark.cli import main as cli_main

F64_BAR = 1e-10  # relative to max(1, max|b|)
LOCKSTEP_BAR = 1e-9  # relative to max(1, |numpy's loss|)
EPS32 = 2.0**-23
SAFETY = 2  # the budget's documented factor for the roundings that are not reductions
EDGES = [(0.99, "ok"), (1.01, "FAIL")]  # a planted error as a multiple of the bar
SIGNED_EDGES = [*EDGES, (-1.01, "FAIL")]  # an error below numpy's counts the same
ONE_TENSOR = {"forward": ["t"], "loss": [], "cot": []}  # a tensor order of one tensor


def small_case(dtype) -> Case:
    """The Case run_check builds for small_net (same arguments, so the same numpy tensors)."""
    return Case.from_model(small_net(dtype), "random", 4, 0, dtype, INPUT_SHAPE, False)


def tensors(dtype):
    return list(small_case(dtype).ref)


# --- check, float64 ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.25, 300.0], ids=["max_below_1", "max_above_1"])
@pytest.mark.parametrize("factor, status", SIGNED_EDGES)
def test_float64_bar_at_the_compare_function(scale, factor, status):
    """compare_tensors with the float64 budgets: the bar is relative to max(1, max|b|)."""
    b = np.random.default_rng(0).uniform(-1, 1, (3, 4)) * scale
    b.flat[0] = scale  # max|b| == scale
    ref = {"t": b}
    got = planted({"t": b.copy()}, "t", factor * F64_BAR * max(1.0, scale), ref)
    r = harness.compare_tensors("fw", ref, got, float64_budgets(ref), ONE_TENSOR)
    assert r["status"] == status, r["rows"]


def test_an_error_exactly_at_the_bar_passes():
    """The bar is inclusive (max|a - b| <= bar): an error of exactly the bar passes, in both
    dtypes' rules (at a zero of numpy's, where a - b is exactly the planted value)."""
    ref = {"t": np.array([2.0, 0.0])}
    bar = float64_budgets(ref)["t"]
    assert bar == F64_BAR * 2.0
    ok = harness.compare_tensors("fw", ref, {"t": np.array([2.0, bar])}, {"t": bar},
                                 ONE_TENSOR)
    assert ok["status"] == "ok", ok["rows"]


@pytest.mark.torch
@pytest.mark.parametrize("factor, status", EDGES)
@pytest.mark.parametrize("tensor", tensors("float64"))
def test_float64_bar_end_to_end(tensor, factor, status, reference_runner):
    """run_check on torch with one tensor planted `factor` bars off: the verdict flips at the
    bar, and a failure is reported at exactly that tensor."""
    needs("torch")
    ref = small_case("float64").ref
    bar = F64_BAR * max(1.0, float(np.abs(ref[tensor]).max()))
    runner = Planted(reference_runner("torch"), tensor, factor * bar, ref)
    r = _check(runner, "float64")
    assert r["status"] == status, (tensor, [x for x in r["rows"] if not x["ok"]])
    assert [x["tensor"] for x in r["rows"] if not x["ok"]] == ([tensor] if status == "FAIL"
                                                               else [])


def _check(runner, dtype) -> dict:
    report = harness.run_check(["torch"], dtype, "random", 4, 0, model=small_net(dtype),
                               input_shape=INPUT_SHAPE, runners={"torch": runner},
                               dyadic=False, log=lambda m: None)
    return report["frameworks"]["torch"]


# --- check, float32 ------------------------------------------------------------------------


def dense_case() -> Case:
    """Flatten then Dense(6, 3): n_reduce and magnitudes simple enough to write out here."""
    net = sk.Sequential(sk.Flatten(), sk.Dense(6, 3, seed=3))
    return Case.from_model(net, "random", 4, 0, "float32", (1, 2, 3), False)


def independent_float32_bars(case: Case) -> dict[str, float]:
    """2 * eps32 * n_reduce * M, by hand: the logits reduce 6 inputs and add a bias (n = 7),
    M = |x| @ |W|^T + |b| in float64; the loss adds the K = 3 classes, magnitude 2 * (max M +
    log K); its logits' gradient (softmax - onehot) / N has n = 10, magnitude max(M, 1) / N."""
    w, b = (np.abs(case.state[k].astype(np.float64)) for k in ("1.weight", "1.bias"))
    x = np.abs(case.x.astype(np.float64)).reshape(len(case.x), -1)
    m = float((x @ w.T + b).max())
    return {"out.1": SAFETY * EPS32 * 7 * m,
            "loss": SAFETY * EPS32 * 10 * 2 * (m + np.log(3)),
            "loss/d.out.1": SAFETY * EPS32 * 10 * max(m, 1.0) / len(case.x)}


@pytest.mark.parametrize("factor, status", SIGNED_EDGES)
@pytest.mark.parametrize("tensor", ["out.1", "loss", "loss/d.out.1"])
def test_float32_budget_at_the_compare_function(tensor, factor, status):
    """The budget equals the hand-derived one, and numpy's own tensors with one element
    `factor` budgets off pass (0.99) or fail at exactly that tensor (1.01)."""
    case = dense_case()
    bar = independent_float32_bars(case)[tensor]
    assert case.budget[tensor] == pytest.approx(bar, rel=1e-9)
    r = case.compare("fw", planted(dict(case.ref), tensor, factor * bar, case.ref))
    assert [x["tensor"] for x in r["rows"] if not x["ok"]] == ([tensor] if status == "FAIL"
                                                               else [])


@pytest.mark.torch
@pytest.mark.parametrize("factor, status", EDGES)
@pytest.mark.parametrize("tensor", tensors("float32"))
def test_float32_budget_end_to_end(tensor, factor, status, reference_runner):
    """As the float64 test, at each tensor's float32 budget. A zero budget (the cotangent
    itself, passed through exactly) has no room below it: 0.99 of it is the exact value, which
    passes; above it, one float32 spacing of max|b| fails."""
    needs("torch")
    case = small_case("float32")
    bar = case.budget[tensor]
    if bar == 0 and status == "FAIL":
        bar = EPS32 * float(np.abs(case.ref[tensor]).max())
    r = _check(Planted(reference_runner("torch"), tensor, factor * bar, case.ref), "float32")
    assert [x["tensor"] for x in r["rows"] if not x["ok"]] == ([tensor] if status == "FAIL"
                                                               else [])


# --- compare, float64 lockstep ---------------------------------------------------------------


@pytest.mark.parametrize("loss", [0.3, 2.3, 1000.0])
@pytest.mark.parametrize("factor, ok", [(0.99, True), (1.01, False), (-1.01, False)])
def test_lockstep_bar_at_the_function(loss, factor, ok):
    ref = np.array([loss, 1.0, loss])
    got = ref.copy()
    got[2] += factor * LOCKSTEP_BAR * max(1.0, loss)
    assert cmp.lockstep(got, ref) is ok
    assert cmp.lockstep([np.nan, 1.0, loss], ref) is False


class _LossOff:
    """A runner whose train_step reports the loss of step `at` `delta(loss)` off."""

    def __init__(self, runner, at, factor):
        self.runner, self.at, self.factor, self.steps = runner, at, factor, 0

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def train_step(self, *args, **kwargs):
        loss = self.runner.train_step(*args, **kwargs)
        self.steps += 1
        if self.steps == self.at:
            loss += self.factor * LOCKSTEP_BAR * max(1.0, abs(loss))
        return loss


@pytest.mark.torch
@pytest.mark.parametrize("factor, code", [(0.99, 0), (1.01, 1)])
def test_lockstep_bar_end_to_end(factor, code, tmp_path, monkeypatch):
    """`skylark compare` with torch's second loss planted `factor` bars off: exit 0 with
    lockstep ok, or exit 1 with lockstep FAIL."""
    needs("torch")
    real = cmp.get_runner
    monkeypatch.setattr(cmp, "get_runner", lambda name, **kw: (
        _LossOff(real(name, **kw), 2, factor) if name == "torch" else real(name, **kw)))
    out = tmp_path / "out"
    assert cli_main(["compare", "--frameworks", "torch", "--steps", "3", "--dtype", "float64",
                     "--batch-size", "8", "--out", str(out), "--quiet"]) == code
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frameworks"]["torch"]["lockstep"] is (code == 0)
