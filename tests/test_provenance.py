"""Every reported tensor of every framework came from that framework.

- The comparison reads each framework's own tensor: numpy's tensors with one tensor planted ten
  bars off fail at exactly that tensor, for every tensor name and every framework's result.
- The framework computed it from its own parameters: a framework given parameters 1e-6 off
  numpy's differs from numpy at every tensor a parameter can move, and only there.
- numpy is never compared with itself: no compared framework is run by numpy's runner, and no
  framework's result is numpy's object or shares memory with it.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS
from planting import SMALL_INPUT, planted, small_net

from reference.frameworks import COMPARED, FRAMEWORKS
from reference.harness import Case, trace_all
from reference.runners.numpy_ref import NumpyRunner

F64_BAR = 1e-10  # relative to max(1, max|b|): the float64 bar


@pytest.fixture(scope="module")
def case() -> Case:
    return Case.from_model(small_net("float64"), "random", 4, 0, "float64", SMALL_INPUT, False)


def _failing(report) -> list[str]:
    return [r["tensor"] for r in report["rows"] if r["ok"] is False]  # None: not computed


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_each_tensor_compared_is_the_frameworks_own(framework, case, reference_runner):
    """One trace per framework; then each tensor in turn is planted ten bars off in that
    framework's result, and the check fails at exactly that tensor."""
    runner = reference_runner(framework)
    grads = runner.supports_gradients  # a forward-only runtime: its forward tensors only
    got = trace_all({framework: runner}, case)[framework]
    assert not isinstance(got, Exception), got
    assert _failing(case.compare(framework, got, grads)) == []
    assert got is not case.ref
    for name, a in got.items():
        assert not any(np.shares_memory(a, b) for b in case.ref.values()), name
    tensors = list(case.ref) if grads else list(got)
    assert tensors == [t for t in case.ref if t in tensors] and (grads or "loss" in tensors)
    for tensor in tensors:
        bar = F64_BAR * max(1.0, float(np.abs(case.ref[tensor]).max()))
        report = case.compare(framework, planted(got, tensor, 10 * bar, case.ref), grads)
        assert _failing(report) == [tensor], (framework, tensor, _failing(report))


def _moved_by_parameters(case) -> list[str]:
    """Every tensor except the two the parameters cannot move in a net ending in a dense layer:
    the cotangent pass's logit gradient (the cotangent itself) and its bias gradient (its sum)."""
    last = len(case.spec) - 1
    return [t for t in case.ref if t not in (f"cot/d.out.{last}", f"cot/d.{last}.bias")]


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_frameworks_compute_from_their_own_parameters(framework, case, reference_runner):
    """Every parameter scaled by 1 + 1e-6 in the framework only: every tensor the parameters
    reach is then ~1e-6 relative off numpy's, 10^4 bars, so each must fail; a tensor that
    still matched would have come from somewhere else (numpy's own, or a stale copy)."""
    runner = reference_runner(framework)
    state = {k: v * (1 + 1e-6) for k, v in case.state.items()}
    runner.setup(case.spec, state, case.dtype, case.input_shape, loss=case.loss)
    got = runner.trace(*case.batch(), **case.trace_kwargs())
    moved = _moved_by_parameters(case)
    if not runner.supports_gradients:  # a forward-only runtime: its forward tensors only
        moved = [t for t in moved if t in got]
    report = case.compare(framework, got, runner.supports_gradients)
    assert sorted(_failing(report)) == sorted(moved)


@pytest.mark.parametrize("framework", COMPARED)
def test_no_compared_framework_runs_numpy(framework):
    """The framework table never points a compared framework at numpy's runner."""
    row = FRAMEWORKS[framework]
    assert row.runner is None or "numpy" not in row.runner, row
    assert FRAMEWORKS["numpy"].runner.endswith(f":{NumpyRunner.__name__}")
