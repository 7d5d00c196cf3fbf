"""Graph models in every framework: each tensor of the zoo (and of the documented JSON graph and a
graph written in Python) against numpy, float64 on tie-heavy inputs and float32 on random ones,
on 28x28 gray and 32x32 RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS, TRAINING_PARAMS
from equivalence import assert_equivalent, make_case, runner

import skylark as sk
from reference.harness import trace_all
from skylark.models import build_model

ZOO = ["resnet", "mobilenet-v2", "densenet", "shufflenet", "inception", "efficientnet"]
EXAMPLE = str(Path(__file__).parent.parent / "docs" / "example_graph.json")
# (dtype, input): exact ties need float64 or dyadic weights (make_case rounds them for "ties")
VARIANTS = [("float64", "ties"), ("float32", "random")]


def python_graph() -> sk.Graph:
    """A graph written in Python: a squeeze-excite gate and a residual around a depthwise conv,
    a channel split and a concat."""
    g = sk.Graph()
    g.add("stem", sk.Conv2D(1, 4, 3, padding=1, seed=1))
    g.add("dw", sk.Conv2D(4, 4, 3, padding=1, groups=4, seed=2))
    g.add("pool", sk.AdaptiveAvgPool2d(1))
    g.add("fc", sk.Conv2D(4, 4, 1, seed=3))
    g.add("gate", sk.Sigmoid())
    g.add("se", sk.Multiply(), ["dw", "gate"])
    g.add("res", sk.Add(), ["se", "stem"])
    g.add("lo", sk.ChannelSlice(0, 2), "res")
    g.add("hi", sk.ChannelSlice(2, 4), "res")
    g.add("hi_act", sk.ReLU6())
    g.add("cat", sk.Concat(), ["hi_act", "lo"])
    g.add("shuffle", sk.ChannelShuffle(2))
    g.add("gap", sk.GlobalAvgPool2D())
    g.add("out", sk.Dense(4, 5, seed=4))
    return g


def _check(model, shape, framework, dtype, kind, training=True, batch=2):
    case = make_case(model, shape, dtype, kind, batch, training=training)
    got = trace_all({framework: runner(framework)}, case)
    assert_equivalent(framework, case, got[framework], f"{kind}, {shape}")


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("dtype, kind", VARIANTS)
def test_graphs_written_in_json_and_python_match_every_framework(framework, dtype, kind):
    _check(build_model(EXAMPLE, (1, 12, 12), dtype=dtype), (1, 12, 12), framework, dtype, kind)
    _check(python_graph(), (1, 8, 8), framework, dtype, kind)


# CI runs 32x32 RGB in every framework; 28x28 gray (the same graphs with one input channel)
# is the exhaustive run: `python -m pytest -m exhaustive tests/test_zoo.py` (README, Tests).
SHAPES = [pytest.param((3, 32, 32), id="rgb32"),
          pytest.param((1, 28, 28), id="gray28", marks=pytest.mark.exhaustive)]


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_matches_every_framework(name, shape, framework):
    for dtype, kind in VARIANTS:
        _check(build_model(name, shape, dtype=dtype), shape, framework, dtype, kind)


@pytest.mark.slow
@pytest.mark.exhaustive
@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_in_evaluation_mode(name, framework):
    """Running statistics instead of the batch's (BatchNorm's other half)."""
    _check(build_model(name, (3, 16, 16), dtype="float64"), (3, 16, 16), framework,
           "float64", "random", training=False)


LOCKSTEP_STEPS = 10


# Keras' four rows on two models in CI (BatchNorm and depthwise convs: mobilenet-v2; a
# projection shortcut: resnet), every model in the exhaustive run; the in-process frameworks on
# every model always.
LOCKSTEP = [pytest.param(name, fw.values[0], marks=[*fw.marks, *(
    [pytest.mark.exhaustive] if fw.values[0].startswith("keras") and
    name not in ("resnet", "mobilenet-v2") else [])], id=f"{name}-{fw.values[0]}")
    for name in ZOO for fw in TRAINING_PARAMS]


@pytest.mark.slow
@pytest.mark.parametrize("name, framework", LOCKSTEP)
def test_zoo_trains_in_lockstep(name, framework):
    """float64 SGD with momentum from the same weights on the same batches: every step's loss
    and the final weights and running statistics within compare's lockstep bar of numpy's
    (`skylark compare --model NAME --steps 200` is the long run; README)."""
    from reference.commands.compare import LOCKSTEP_ATOL64
    from reference.spec import describe

    shape = (3, 16, 16)
    net = build_model(name, shape, dtype="float64")
    ref, other = runner("numpy"), runner(framework)
    for r in (ref, other):
        r.setup(describe(net), net.state(), "float64", shape)
        r.train_setup(lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for step in range(LOCKSTEP_STEPS):
        x, y = rng.uniform(-0.5, 0.5, (8, *shape)), rng.integers(0, 10, 8)
        want, got = ref.train_step(x, y), other.train_step(x, y)
        assert abs(got - want) <= LOCKSTEP_ATOL64, (framework, step, got, want)
    mine = ref.get_params()
    for k, v in other.get_params().items():
        assert np.abs(v - mine[k]).max() <= LOCKSTEP_ATOL64, (framework, k)


@pytest.mark.torch
def test_torch_holds_nested_node_names_and_names_a_clash(tmp_path):
    """Node "layer1" and node "layer1.conv" (a module with a child), in either order; a name
    torch's nn.Module already uses ("training") is refused, naming the node."""
    from skylark.models import from_config

    def graph(first_name, second_name):
        return from_config([
            {"kind": "conv2d", "name": first_name, "in_channels": 1, "out_channels": 2,
             "kernel_size": 3},
            {"kind": "conv2d", "name": second_name, "in_channels": 2, "out_channels": 2,
             "kernel_size": 3},
            {"kind": "flatten", "name": "flat"},
            {"kind": "dense", "name": "fc", "in_features": 2 * 4 * 4, "out_features": 3}])

    for names in (("layer1.conv", "layer1"), ("layer1", "layer1.conv")):
        _check(graph(*names), (1, 8, 8), "torch", "float64", "random")
    from reference.runners.torch_ref import build_torch_model
    from reference.spec import describe

    with pytest.raises(ValueError, match=r"node 'training': 'training' is an attribute of "
                                         r"torch's nn.Module"):
        build_torch_model(describe(graph("conv", "training")), (1, 8, 8))


@pytest.mark.parametrize("command", ["check", "compare"])
def test_a_join_of_flattened_maps_is_a_usage_error(command, tmp_path, capsys):
    """skylark builds it; the references cannot mirror it: exit 2 and one line, before any
    framework starts."""
    import json

    from skylark.cli import main

    path = tmp_path / "g.json"
    path.write_text(json.dumps({"layers": [
        {"kind": "flatten", "name": "a", "inputs": ["input"]},
        {"kind": "globalavgpool2d", "name": "b", "inputs": ["input"]},
        {"kind": "concat", "name": "cat", "inputs": ["a", "b"]},
        {"kind": "dense", "name": "fc", "in_features": 65, "out_features": 10}]}))
    extra = ["--input", "digits"] if command == "check" else ["--steps", "1", "--out",
                                                               str(tmp_path / "o")]
    assert main([command, "--model", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert "spec node 'cat': concat of flattened maps cannot be mirrored" in err
