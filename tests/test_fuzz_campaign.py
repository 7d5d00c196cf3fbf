"""skylark fuzz with a framework: a seeded smoke campaign, a planted bug found and shrunk, the
finite-difference oracle, the regression from the fuzzer's first finding, and the Dask path
against a loopback cluster this test starts (its verdicts equal the local run's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import skylark as sk
from reference.fuzz import campaign, tasks
from reference.fuzz.fd import fd_failures
from reference.fuzz.generate import generate
from reference.fuzz.oracle import Oracle
from reference.fuzz.plan import build_layers
from reference.fuzz.repro import load_plan
from skylark.layers import activation
from skylark.models import from_config

pytestmark = pytest.mark.torch
REPROS = Path(__file__).parents[1] / "docs" / "repros"


class InProcess:
    """A backend that runs each task at once, in this process (what a worker would do)."""

    slots = 1

    def submit(self, fn, *args):
        return fn(*args)

    @staticmethod
    def ready(result) -> bool:
        return True

    @staticmethod
    def result(result):
        return result

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def torch_oracle():
    oracle = tasks.oracle(("torch",), True)
    if "torch" not in oracle.runners:
        pytest.skip(f"torch unavailable: {oracle.unavailable}")
    return oracle


def test_a_seeded_smoke_campaign_passes_on_a_correct_tree(torch_oracle, tmp_path):
    s = campaign.run_campaign(InProcess(), ["torch"], seed=0, cases=12, out=str(tmp_path),
                              log=lambda m: None)
    assert s["cases"] == 12 and s["counts"]["pass"] + s["counts"]["inexpressible"] == 12
    assert s["divergences"] == {} and s["missing"] == {} and s["frameworks"] == ["torch"]
    assert [c[0] for c in s["fingerprint_cases"]] == list(range(12))


def test_a_planted_bug_is_found_and_shrunk_to_a_small_repro(torch_oracle, tmp_path,
                                                            monkeypatch):
    """ReLU's gradient let through at exactly 0 (a mutant of the self-test): the kink-heavy
    input finds it within 60 cases, and the repro shrinks to at most two blocks."""
    real = activation.ReLU.forward

    def relu_grad_at_zero(self, x):
        y = real(self, x)
        self._mask = x >= 0
        return y

    monkeypatch.setattr(activation.ReLU, "forward", relu_grad_at_zero)
    found = None
    for i in range(60):
        v = tasks.run_case(("torch",), False, 0, i)
        if v["status"] == "fail":
            found = v
            break
    assert found is not None, "the planted ReLU bug was not found in 60 cases"
    failure = found["failures"][0]
    small = tasks.shrink_case(("torch",), False, found["plan"], found["index"], failure, 150)
    assert small["failure"]["signature"] == failure["signature"]
    assert len(small["plan"]["blocks"]) <= 2 and small["plan"]["batch"] <= 2
    assert any(e["kind"] in ("relu",) for e in build_layers(small["plan"]))


def _fd(plan):
    model = from_config(build_layers(plan), dtype="float64", seed=plan["seed"])
    return dict(fd_failures(model, plan, np.random.default_rng(0)))


def test_finite_differences_pass_a_correct_case_and_catch_a_wrong_gradient(monkeypatch):
    plan = {**generate(0, 0), "dtype": "float64", "input": "random", "mode": "train",
            "input_shape": [2, 5, 4], "batch": 2,
            "blocks": [{"op": "conv", "out": 3, "kernel": 2, "act": {"kind": "tanh"}}],
            "head": {"pool": "flatten", "hidden": []}}
    assert _fd(plan) == {}
    real = sk.Tanh.backward
    monkeypatch.setattr(sk.Tanh, "backward", lambda self, dy: 1.01 * real(self, dy))
    bad = _fd(plan)
    assert "loss/d.input" in bad and "loss/d.b0.conv.weight" in bad


def test_numpy_oracles_run_on_what_the_references_cannot_mirror(monkeypatch):
    """A softmax layer has no reference builder: the case is inexpressible, yet the finite
    differences still run on it and catch a softmax backward summed over the batch."""
    plan = {**generate(0, 0), "dtype": "float64", "input": "random", "mode": "eval",
            "input_shape": [1, 3, 3], "batch": 3, "blocks": [],
            "head": {"pool": "flatten", "hidden": [4], "act": {"kind": "softmax"}}}
    oracle = Oracle([], fd=True)
    assert oracle.run(plan, index=0)["status"] == "inexpressible"
    monkeypatch.setattr(sk.Softmax, "backward", lambda self, dy: self._y * (
        dy - (dy * self._y).sum(axis=0, keepdims=True)))
    verdict = oracle.run(plan, index=0)
    assert verdict["status"] == "fail" and verdict["fd"]
    assert verdict["failures"][0]["framework"] == "numpy-fd"


def test_batchnorm_on_a_constant_channel_is_within_the_float32_budget(torch_oracle):
    """The fuzzer's first finding, shrunk: a dilated conv whose window reads only padding
    gives BatchNorm a constant channel; numpy's xhat is exactly 0, torch's an ulp of the mean
    times invstd, and the weight gradient's budget was 0 (reference.kinds.batchnorm2d)."""
    plan = {"input_shape": [1, 2, 4], "batch": 3, "seed": 5, "dtype": "float32",
            "input": "random", "mode": "train", "reduction": "mean", "label_smoothing": 0.0,
            "blocks": [{"op": "conv", "out": 2, "kernel": 2, "stride": 3, "dilation": [3, 1],
                        "padding": 1, "bn": True}],
            "head": {"pool": "flatten", "hidden": []}}
    verdict = torch_oracle.run(plan)
    assert verdict["status"] == "pass", verdict


def test_a_zero_gradient_behind_batchnorm_is_within_the_float64_floor(torch_oracle):
    """Once a known deviation: a conv bias feeding three stacked training-mode BatchNorms on a
    constant channel has a gradient of exactly 0; torch leaves rounding of large terms there,
    2e-10 to 1e-9, above the fixed 1e-10 bar. The derived float64 floor covers it, and the
    tensors that do not cancel keep the fixed bar."""
    plan = load_plan(str(REPROS / "repro-float64-bar-zero-bias-gradient.json"))
    verdict = torch_oracle.run(plan)
    assert verdict["status"] == "pass", verdict


@pytest.mark.slow  # a Dask cluster of two worker processes, each starting torch
def test_the_dask_cluster_gives_the_local_verdicts(torch_oracle, tmp_path):
    distributed = pytest.importorskip("distributed")
    from reference.fuzz.cluster import DaskBackend

    local = campaign.run_campaign(InProcess(), ["torch"], seed=7, cases=8, shrink=False,
                                  out=str(tmp_path), log=lambda m: None)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        backend = DaskBackend(client)
        assert backend.slots == 2
        remote = campaign.run_campaign(backend, ["torch"], seed=7, cases=8, shrink=False,
                                       out=str(tmp_path), log=lambda m: None)
    assert remote["fingerprint_cases"] == local["fingerprint_cases"]
    assert remote["counts"] == local["counts"] and remote["cases"] == 8
