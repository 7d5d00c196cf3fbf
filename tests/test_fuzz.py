"""skylark fuzz, without frameworks: the generator, the plan builder, the shrinker, signatures,
the known-deviation table, finite differences and the command's usage errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.commands import fuzz as fuzz_cmd
from reference.fuzz import known, repro
from reference.fuzz.generate import generate
from reference.fuzz.plan import NUM_CLASSES, Invalid, build_layers, out_shape
from reference.fuzz.shrink import shrink, size
from reference.fuzz.signature import describe_tensor, signature
from reference.inputs import make_batch
from skylark.models import LAYERS, from_config


def test_a_case_is_a_function_of_seed_and_index_alone():
    assert generate(3, 17) == generate(3, 17)
    assert generate(3, 17) != generate(3, 18) and generate(3, 17) != generate(4, 17)


def test_generated_plans_build_and_cover_every_layer_kind():
    """200 cases of one seed: every plan builds in skylark and ends in the logits; together
    they use every layer kind skylark has, both dtypes, every input and both modes."""
    kinds, fields = set(), {k: set() for k in ("dtype", "input", "mode", "reduction", "batch")}
    for i in range(200):
        plan = generate(0, i)
        layers = build_layers(plan)
        assert out_shape(layers, plan["input_shape"]) == (NUM_CLASSES,)
        kinds |= {e["kind"] for e in layers}
        for k in fields:
            fields[k].add(plan[k])
    assert kinds == set(LAYERS), set(LAYERS) - kinds
    assert fields["dtype"] == {"float32", "float64"} and fields["mode"] == {"train", "eval"}
    assert fields["input"] == {"random", "ties", "kinks"} and 1 in fields["batch"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), index=st.integers(0, 10**6))
def test_any_case_builds_and_round_trips_through_the_config(seed, index):
    plan = generate(seed, index)
    layers = build_layers(plan)
    model = from_config(json.loads(json.dumps(layers)), dtype=plan["dtype"], seed=plan["seed"])
    x = np.zeros((plan["batch"], *plan["input_shape"]), plan["dtype"])
    assert model.eval().forward(x).shape == (plan["batch"], NUM_CLASSES)


def test_a_block_that_does_not_fit_is_invalid():
    plan = {**generate(0, 0), "input_shape": [1, 2, 2], "head": {"pool": "flatten"},
            "blocks": [{"op": "conv", "out": 2, "kernel": 3, "padding": 0}]}
    with pytest.raises(Invalid, match="kernel_size"):
        build_layers(plan)


def test_shrinking_keeps_the_failure_and_drops_everything_else():
    """A synthetic oracle: 'fails' while a ceil_mode max pool is in the plan. The shrinker must
    keep that pool and remove every other block, the hidden layers, the batch and channels."""
    plan = next(p for p in (generate(5, i) for i in range(500)) if len(p["blocks"]) >= 3 and any(
        b.get("ceil_mode") for b in p["blocks"]))

    def fails(p):
        try:
            build_layers(p)
        except Invalid:
            return False
        return any(b["op"] == "maxpool" and b.get("ceil_mode") for b in p["blocks"])

    small, tries = shrink(plan, "x", fails, max_tries=400)
    assert fails(small) and tries <= 400
    assert len(small["blocks"]) == 1 and small["batch"] == 1 and not small["head"]["hidden"]
    assert small["input_shape"][0] == 1 and size(small) < size(plan)


def test_signatures_name_the_kind_not_the_node():
    layers = [{"kind": "conv2d", "name": "b0.conv"}, {"kind": "batchnorm2d", "name": "b1.bn"}]
    assert describe_tensor("out.b0.conv", layers) == "conv2d output"
    assert describe_tensor("loss/d.b0.conv.weight", layers) == "conv2d.weight gradient"
    assert describe_tensor("stat.b1.bn.running_var", layers) == "batchnorm2d.running_var"
    assert describe_tensor("cot/d.out.b1.bn", layers) == "batchnorm2d output gradient"
    assert describe_tensor("cot/d.input", layers) == "input gradient"
    r = {"status": "FAIL", "first_forward": None,
         "first_backward": {"loss": "loss/d.b0.conv.weight", "cot": None}}
    assert signature("torch", r, layers) == "torch FAIL loss: conv2d.weight gradient"
    assert signature("jax", {"status": "ERROR", "reason": "TypeError: x"}, layers) == \
        "jax ERROR: TypeError"


def test_known_deviations_are_matched_by_framework_and_rendered(monkeypatch):
    row = known.Deviation("demo", ("tf",), "tf 2.x", "a cause", "skylark check ...",
                          lambda plan, layers, f: "conv2d" in f["signature"])
    monkeypatch.setattr(known, "KNOWN", (*known.KNOWN, row))

    def failure(sig):
        return {"framework": sig.split()[0], "signature": sig, "detail": ""}

    assert known.match({}, [], failure("tf FAIL forward: conv2d output")) == "demo"
    assert known.match({}, [], failure("torch FAIL forward: conv2d output")) is None
    assert known.match({}, [], failure("tf FAIL forward: dense output")) is None
    assert "| demo | tf | tf 2.x | a cause |" in known.table()


def test_every_known_deviation_has_its_repro_file():
    for d in known.KNOWN:
        path = d.repro.split("--model ")[1].split()[0]
        with open(path) as fh:
            layers = json.load(fh)["layers"]
        with open(path) as fh:
            saved = json.load(fh)
        assert d.matches(saved["plan"], layers, saved["failure"]), d.id


def test_the_repro_is_a_check_command_and_a_model_file(tmp_path):
    plan = {**generate(0, 3), "small_blocks": False}
    assert repro.command("r.json", {**plan, "small_blocks": True}, "torch") == \
        "skylark fuzz --replay r.json"  # check has no knob for skylark's block sizes
    saved = repro.save(plan, {"framework": "torch", "signature": "s", "detail": "d"},
                       str(tmp_path), "0-3-torch")
    with open(saved["path"]) as fh:
        data = json.load(fh)
    assert data["layers"] == build_layers(plan) and repro.load_plan(saved["path"]) == plan
    c, h, w = plan["input_shape"]
    assert saved["command"].startswith(f"skylark check --model {saved['path']} --frameworks "
                                       f"torch --dtype {plan['dtype']} --input {plan['input']} "
                                       f"--input-shape {c},{h},{w}")


def test_the_kinks_input_has_exact_zeros_and_an_all_zero_sample():
    x, _, _ = make_batch("kinks", 4, (2, 5, 3), 10, seed=1, dtype="float32")
    assert not x[0].any() and (x == 0).mean() > 0.3
    assert set(np.unique(x)) <= {-3.0, -0.5, 0.0, 0.5, 3.0, 6.0}


@pytest.mark.parametrize("argv, message", [
    (["--seconds", "0"], "Received: seconds='0'"),
    (["--workers", "0"], "workers"),
    (["--frameworks", "mxnet"], "Received: 'mxnet'"),
])
def test_bad_usage_is_exit_2_naming_the_value(argv, message, capsys):
    assert fuzz_cmd.main(argv) == 2
    assert message in capsys.readouterr().err


def test_replay_of_a_file_without_a_plan_is_exit_2(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"layers": []}))
    assert fuzz_cmd.main(["--replay", str(path), "--frameworks", "torch"]) == 2
    assert "Received" in capsys.readouterr().err


def test_the_generator_directions_reach_their_bug_classes():
    """Over 200 cases: a shuffle that is not its own inverse (1 < g < C, g != C / g), a
    squeeze-excite gate broadcast over other axes than (C, 1, 1) ((C, H, 1), (C, 1, W) and
    (1, H, W)), and an activation that ends a residual branch, read by the add."""
    from reference.spec import describe, geometry

    shuffles, gates, act_into_add = set(), set(), 0
    for i in range(200):
        plan = generate(0, i)
        layers = build_layers(plan)
        try:
            spec = describe(from_config(layers))
        except ValueError:  # a softmax head: the references do not build it
            continue
        for s, g in zip(spec, geometry(spec, plan["input_shape"]), strict=True):
            if s["kind"] == "channelshuffle":
                shuffles.add((s["groups"], g.in_shape[0]))
            if s["kind"] == "multiply":
                x, gate = g.in_shapes
                gates.add(tuple(int(a == b) for a, b in zip(x, gate, strict=True)))
        names = {e["name"]: e for e in layers}
        act_into_add += any(e["kind"] == "add" and names.get(e["inputs"][0], {}).get(
            "name", "").endswith(".act") for e in layers)
    assert any(1 < g < c and g * g != c for g, c in shuffles), shuffles
    assert {(1, 0, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1)} <= gates, gates
    assert act_into_add >= 3


def test_an_omitted_default_is_checked_against_the_documented_one(monkeypatch):
    """A pool's stride left out means the kernel (torch, Keras): a skylark that defaulted it to
    1 would describe the model to the references with stride 1, and both sides would agree;
    the config check compares what came back with the documented default instead."""
    from reference.fuzz.oracle import _unfaithful

    layers = [{"kind": "maxpool2d", "name": "p", "kernel_size": 2},
              {"kind": "flatten", "name": "f"},
              {"kind": "dense", "name": "d", "in_features": 4, "out_features": 10}]
    model = from_config(layers)
    assert _unfaithful(layers, model) == ""
    model.nodes[0].layer.stride = (1, 1)
    assert "stride=2 came back from to_config as [1, 1]" in _unfaithful(layers, model)


def test_a_model_run_again_must_match_a_fresh_copy(monkeypatch):
    """The reuse oracle: a layer that keeps something from its first batch (planted: an
    output remembered from the first call) fails; the correct model passes."""
    from reference.fuzz.oracle import _reused

    plan = {**generate(0, 0), "dtype": "float64", "batch": 2, "input_shape": [1, 4, 4],
            "blocks": [{"op": "conv", "out": 2, "kernel": 3, "padding": 1}],
            "head": {"pool": "flatten", "hidden": []}}
    layers = build_layers(plan)
    model = from_config(layers, dtype="float64", seed=0)
    assert _reused(plan, layers, model) == []
    conv, first = model.nodes[0].layer, {}
    forward = conv.forward
    monkeypatch.setattr(conv, "forward", lambda x: first.setdefault("y", forward(x))[:len(x)])
    (failure,) = _reused(plan, layers, model)
    assert failure["framework"] == "numpy-reuse" and "logits differs" in failure["detail"]


def test_a_crash_in_skylarks_forward_is_kept_not_redrawn(monkeypatch):
    """Invalid is for errors skylark states ("Received: ..."); any other exception from a
    model whose layers declare a valid shape keeps the case, so the oracle reports it."""
    import skylark as sk

    plan = {**generate(0, 0), "input_shape": [1, 4, 4], "head": {"pool": "flatten"},
            "blocks": [{"op": "conv", "out": 2, "kernel": 3, "padding": 1}]}

    def crash(self, x):
        raise ValueError("strides is incompatible with shape of requested array")

    monkeypatch.setattr(sk.Conv2D, "forward", crash)
    assert [e["kind"] for e in build_layers(plan)] == ["conv2d", "flatten", "dense"]
    monkeypatch.setattr(sk.Conv2D, "forward", lambda self, x: (_ for _ in ()).throw(
        ValueError("Received: nothing that fits")))
    with pytest.raises(Invalid):
        build_layers(plan)


def test_same_pads_are_the_reference_own_statement_of_tfs_rule():
    """reference.spec.same_pads (what the references pad with) agrees with skylark's pads on
    every kernel, stride, dilation and size drawn here; it is written apart so that a wrong
    split in skylark's shows as a divergence."""
    import itertools

    import skylark as sk
    from reference.spec import describe, same_pads

    for k, s, d, h in itertools.product([1, 2, 3, 4], [1, 2, 3], [1, 2], [1, 4, 7, 12]):
        for layer in (sk.Conv2D(1, 1, k, stride=s, dilation=d, padding="same"),
                      sk.AvgPool2D(k, stride=s, padding="same") if d == 1 else None):
            if layer is not None:
                spec = describe(sk.Sequential(layer))[0]
                assert same_pads(spec, (h, h + 1)) == tuple(layer.pads((h, h + 1))), spec
    # the odd pixel goes after: 4 wide, kernel 2, stride 1 pads 0 before and 1 after
    spec = describe(sk.Sequential(sk.Conv2D(1, 1, 2, padding="same")))[0]
    assert same_pads(spec, (4, 4)) == (0, 1, 0, 1)


def test_a_saturated_tie_is_known_only_on_a_case_with_activation_tails():
    """saturated-activation-pool-ties: seed 2026's case 166 (a tanh at scale 13.9, offset 8.9,
    read by a max-pool) as the campaign reported it, for every framework that trains; the same
    failure on a plan without tails, a forward failure or numpy's own oracle is new."""
    from reference.fuzz.generate import generate
    from reference.fuzz.plan import build_layers

    plan = generate(2026, 166)
    layers = build_layers(plan)
    hit = {"framework": "tf", "signature": "tf FAIL cot: tanh output gradient",
           "detail": "cot/d.out.b0.tanh: max|a-b| 0.145 > budget 0.0031 (1 tensors off)"}
    for fw in ("torch", "tf", "jax", "keras", "keras-tensorflow", "keras-jax"):
        assert known.match(plan, layers, {**hit, "framework": fw}) == \
            "saturated-activation-pool-ties", fw
    # keras-torch's own tail rounding (the row before) has the same signature and comes first
    assert known.match(plan, layers, {**hit, "framework": "keras-torch"}) == \
        "keras-torch-elementwise-tail-ties"
    plain = {**plan, "blocks": [{k: v for k, v in b.items() if k != "tails"}
                                for b in plan["blocks"]]}
    assert known.match(plain, layers, hit) is None
    assert known.match(plan, layers, {**hit, "signature": "tf FAIL forward: tanh output",
                                      "detail": "out.b0.tanh: max|a-b| 1 > budget"}) is None
    assert known.match(plan, layers, {**hit, "framework": "numpy-fd"}) is None


def test_zeropad_pads_are_torchs_documented_order_not_skylarks(monkeypatch):
    """reference.spec.zeropad_pads (what the references pad with) is torch's (left, right, top,
    bottom) stated apart: it agrees with skylark's layer, and a skylark that read its list in
    Keras' order (H's pair first) gives the references other pads than its own."""
    import skylark as sk
    from reference.spec import describe, geometry, zeropad_pads

    for padding in (2, [0, 1, 2, 0], [1, 2, 0, 2]):
        layer = sk.ZeroPad2d(padding)
        assert zeropad_pads(padding) == tuple(layer.pads()), padding
    assert zeropad_pads([1, 2, 3, 4]) == (3, 4, 1, 2)
    model = sk.Sequential(sk.ZeroPad2d([0, 1, 2, 0]))
    monkeypatch.setattr(sk.ZeroPad2d, "pads", lambda self, hw=None: tuple(self.padding))
    geo = geometry(describe(model), (1, 4, 4))[0]
    assert geo.pads == (2, 0, 0, 1) != tuple(model[0].pads())


def test_the_tail_rounding_tie_matches_only_a_gradient_behind_a_max_pool():
    """keras-torch-elementwise-tail-ties: a backward pass first off at an activation's output
    gradient where a max-pool reads that activation; a forward failure, another framework or
    an activation no max-pool reads is new."""
    with open("docs/repros/repro-keras-torch-silu-tail-ties.json") as fh:
        layers = json.load(fh)["layers"]
    def failure(framework, signature, detail):
        return {"framework": framework, "signature": f"{framework} {signature}",
                "detail": detail}

    hit = failure("keras-torch", "FAIL loss: silu output gradient",
                  "loss/d.out.b4.silu: max|a-b| 0.02 > budget 4.5e-10 (16 tensors off)")
    assert known.match({}, layers, hit) == "keras-torch-elementwise-tail-ties"
    assert known.match({}, layers, {**hit, "framework": "torch"}) is None
    assert known.match({}, layers, failure("keras-torch", "FAIL forward: silu output",
                                           "out.b4.silu: max|a-b| 0.02 > budget")) is None
    # b2.relu is read by a conv, not a max-pool
    assert known.match({}, layers, failure("keras-torch", "FAIL loss: relu output gradient",
                                           "loss/d.out.b2.relu: max|a-b| 1 > budget")) is None
