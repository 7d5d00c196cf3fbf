"""skylark fuzz's planted-error oracle (reference/fuzz/plant.py), its elementwise activation
oracle (reference/fuzz/ulp.py) and the activation-tails direction: silent on the correct tree,
and each one naming a checker made lenient or an activation made wrong in its tail."""

from __future__ import annotations

import math

import numpy as np
import pytest

import reference.budgets as budgets
from reference import harness
from reference.fuzz import generate as gen
from reference.fuzz import oracle as fuzz_oracle
from reference.fuzz.generate import generate
from reference.fuzz.plan import build_layers
from reference.fuzz.plant import plant_failures, rule_bars
from reference.fuzz.shrink import shrink
from reference.fuzz.ulp import ulp_failures
from skylark.layers.activation import Sigmoid
from skylark.layers.activation_gated import GELU
from skylark.models import from_config

# seed 0: 10 is float32 flatten -> dense (the float32 rule pins that dense), 12 has a GELU
# (erf) behind an affine map reaching x < -5.66, 25 the same in float32; the rest mixed
CASES = (0, 1, 2, 3, 4, 10, 12, 25)
LONE_DENSE = {"input_shape": [2, 3, 4], "batch": 3, "seed": 5, "dtype": "float32",
              "input": "random", "mode": "eval", "reduction": "sum", "label_smoothing": 0.0,
              "blocks": [], "head": {"pool": "flatten", "hidden": []}}


def case_of(plan: dict) -> harness.Case:
    """numpy's tensors and budgets of `plan` as `skylark check` (and the fuzz oracle) builds
    them."""
    model = from_config(build_layers(plan), dtype=plan["dtype"], seed=plan["seed"])
    return harness.Case.from_model(
        model, plan["input"], plan["batch"], plan["seed"], plan["dtype"],
        tuple(plan["input_shape"]), plan["input"] in ("ties", "kinks"),
        training=plan["mode"] == "train",
        loss={"label_smoothing": plan["label_smoothing"], "reduction": plan["reduction"]})


def plant(plan: dict) -> list[str]:
    return [f["signature"] for f in plant_failures(case_of(plan), np.random.default_rng(0))]


@pytest.mark.parametrize("index", CASES)
def test_the_numpy_oracles_pass_on_the_correct_tree(index):
    case = case_of(generate(0, index))
    assert plant_failures(case, np.random.default_rng(index)) == []
    assert ulp_failures(case) == []


def test_the_rule_pins_the_float32_bar_of_a_lone_dense_and_its_loss():
    """2 eps32 (in_features + 1) max(|x| |W|^T + |b|), restated in the test from the documented
    formula; the loss adds K = 10 and the batch of 3 (sum reduction)."""
    case = case_of(LONE_DENSE)
    bars = rule_bars(case)
    x = np.abs(case.x.astype(np.float64)).reshape(3, -1)
    w, b = (np.abs(case.state[f"head.fc0.{p}"].astype(np.float64)) for p in ("weight", "bias"))
    m = float((x @ w.T + b).max())
    assert bars["out.head.fc0"] == (pytest.approx(2 * 2**-23 * 25 * m),) * 2
    loss = 2 * 2**-23 * (25 + 10 + 3) * 2 * (m + math.log(10)) * 3
    assert bars["loss"] == (pytest.approx(loss),) * 2
    # and the code under test agrees with it to rounding (it is derived another way)
    assert case.budget["out.head.fc0"] == pytest.approx(bars["out.head.fc0"][0], rel=1e-9)
    assert case.budget["loss"] == pytest.approx(bars["loss"][0], rel=1e-9)


def signed_row(orig):
    def row(tensor, b, a, budget):
        r = orig(tensor, b, a, budget)
        if r["max_abs"] is not None:
            signed = float((np.asarray(a, np.float64) - b).max(initial=0.0))
            r["ok"] = r["ok"] or (signed <= budget and not r["note"])
        return r
    return row


def dtype_blind_row(orig):
    return lambda tensor, b, a, budget: orig(
        tensor, b, None if a is None else np.asarray(a).astype(np.asarray(b).dtype), budget)


@pytest.mark.parametrize("lenient, signature", [
    (signed_row, "numpy-plant FAIL: a planted error of 4x the budget passed"),
    (dtype_blind_row, "numpy-plant FAIL: a tensor of the wrong dtype passed in a float32 run"),
])
def test_a_lenient_comparison_is_named(monkeypatch, lenient, signature):
    assert plant(LONE_DENSE) == []
    monkeypatch.setattr(harness, "_row", lenient(harness._row))
    assert signature in plant(LONE_DENSE)


@pytest.mark.parametrize("name, value, dtype, how", [
    ("F64_RTOL", 1e-8, "float64", "looser"), ("F64_RTOL", 1e-11, "float64", "stricter"),
    ("K_SAFETY", 20, "float32", "looser"), ("K_SAFETY", 0.5, "float32", "stricter")])
def test_a_bar_off_the_rule_is_named(monkeypatch, name, value, dtype, how):
    assert plant({**LONE_DENSE, "dtype": dtype}) == []
    monkeypatch.setattr(budgets, name, value)
    assert plant({**LONE_DENSE, "dtype": dtype}) == [
        f"numpy-plant FAIL: a {dtype} bar {how} than the rule"]


def tail_gelu_plan(dtype="float64") -> dict:
    """A GELU (erf) behind an affine map that puts most of its inputs below -5.66."""
    return {**LONE_DENSE, "dtype": dtype, "reduction": "mean", "blocks": [
        {"op": "act", "act": {"kind": "gelu", "approximate": "none"},
         "tails": {"scale": 6.0, "offset": -7.0}}]}


def test_a_gelu_wrong_in_its_tail_only_is_named(monkeypatch):
    """1e-6 relative below x = -5: under 1e-15 absolute there, far below the float64 bar."""
    forward = GELU.forward

    def off(self, x):
        y = forward(self, x)
        return np.where(x < -5, y * (1 + 1e-6), y)

    plan = tail_gelu_plan()
    assert ulp_failures(case_of(plan)) == []
    monkeypatch.setattr(GELU, "forward", off)
    got = ulp_failures(case_of(plan))
    assert [f["signature"] for f in got] == ["numpy-ulp FAIL: gelu output"]
    assert "b0.gelu output: at x=-" in got[0]["detail"]


def test_a_sigmoid_gradient_cut_off_in_saturation_is_named(monkeypatch):
    """sigmoid'(x) = y (1 - y) set to 0 where y is within 4e-4 of 0 or 1 (|x| above about 7.8):
    a saturation shortcut. The oracle names the gradient, not the output."""
    backward = Sigmoid.backward

    def cut(self, dy):
        dx = backward(self, dy)
        return np.where(np.abs(self._y - 0.5) > 0.4996, 0.0, dx)

    plan = {**tail_gelu_plan(), "blocks": [{"op": "act", "act": {"kind": "sigmoid"},
                                            "tails": {"scale": 8.0, "offset": -8.0}}]}
    assert ulp_failures(case_of(plan)) == []
    monkeypatch.setattr(Sigmoid, "backward", cut)
    assert {f["signature"] for f in ulp_failures(case_of(plan))} == {
        "numpy-ulp FAIL: sigmoid input gradient"}


def test_the_ulp_failure_survives_shrinking(monkeypatch):
    """Through the fuzz oracle (no framework started): the signature is kept while the plan
    shrinks, and the shrunk plan keeps the affine map (without it the tail is not reached)."""
    forward = GELU.forward
    monkeypatch.setattr(GELU, "forward", lambda self, x: np.where(
        x < -5, forward(self, x) * (1 + 1e-6), forward(self, x)))
    oracle = fuzz_oracle.Oracle([], fd=False)
    plan = {**tail_gelu_plan(), "input_shape": [3, 4, 4], "batch": 2, "head": {
        "pool": "flatten", "hidden": [4], "act": {"kind": "relu"}}}
    target = "numpy-ulp FAIL: gelu output"
    verdict = oracle.run(plan, index=1)
    assert target in [f["signature"] for f in verdict["failures"]]

    def fails(p):
        return target in [f["signature"] for f in oracle.run(p, index=1)["failures"]]

    small, _ = shrink(plan, target, fails, max_tries=30)
    assert small["blocks"][0].get("tails") and not small["head"]["hidden"]


def test_the_tails_direction_leaves_every_other_draw_alone(monkeypatch):
    """With the direction off, the same cases differ only in the activations it changed."""
    with_tails = [generate(3, i) for i in range(40)]
    monkeypatch.setattr(gen, "tails", lambda rng, plan: plan)
    changed = 0
    for plan, plain in zip(with_tails, (generate(3, i) for i in range(40)), strict=True):
        strip = [{k: v for k, v in b.items() if k not in ("act", "tails")}
                 for b in plan["blocks"]]
        assert strip == [{k: v for k, v in b.items() if k not in ("act", "tails")}
                         for b in plain["blocks"]]
        assert {**plan, "blocks": 0, "head": 0} == {**plain, "blocks": 0, "head": 0}
        changed += plan != plain
    assert changed  # the direction does something in 40 cases
