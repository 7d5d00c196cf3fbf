"""The layer-kind registry: every kind is complete in every framework, and a kind that is not
fails loudly (never a layer silently dropped from one framework's model)."""

from __future__ import annotations

import importlib

import pytest

import skylark as sk
from reference import kinds, transfer
from reference.kinds import KINDS, Kind, kind_of, require_builders
from reference.spec import build, describe, geometry


class Half(Kind):
    """A kind with no framework builder at all."""

    name = "half"
    layer = sk.ReLU


class Weighted(Kind):
    name = "weighted"
    layer = sk.Dense


@pytest.mark.parametrize("framework", kinds.FRAMEWORK_BUILDERS)
def test_every_kind_has_every_framework_builder(framework):
    require_builders(framework)  # raises on a missing one


@pytest.mark.parametrize("framework", kinds.FRAMEWORK_BUILDERS)
def test_a_kind_without_a_builder_is_named(framework):
    with pytest.raises(RuntimeError, match=rf"{framework}: no builder for layer kind\(s\) "
                                           r"\['half'\]"):
        require_builders(framework, {**KINDS, "half": Half()})


def test_a_weighted_kind_without_a_layout_rule_is_named():
    transfer.check_layout_rules()
    with pytest.raises(RuntimeError, match=r"no Keras layout rule for kind\(s\) \['weighted'\]"):
        transfer.check_layout_rules({**KINDS, "weighted": Weighted()})


@pytest.mark.parametrize("module, framework", [
    pytest.param("reference.runners.torch_ref", "torch", marks=pytest.mark.torch),
    pytest.param("reference.runners.tf_ref", "tf", marks=pytest.mark.tf),
    pytest.param("reference.runners.keras_ref", "keras", marks=pytest.mark.keras),
    pytest.param("reference.runners.onnx_ref", "onnx", marks=pytest.mark.onnxruntime),
])
def test_framework_module_refuses_to_import_with_an_incomplete_kind(module, framework,
                                                                    monkeypatch):
    mod = importlib.import_module(module)
    monkeypatch.setitem(KINDS, "half", Half())
    with pytest.raises(RuntimeError, match="half"):
        importlib.reload(mod)
    monkeypatch.delitem(KINDS, "half")
    importlib.reload(mod)  # back to a working module for the other tests


LAYERS = [
    sk.Conv2D(3, 4, (2, 3), stride=(2, 1), padding="same", bias=False),
    sk.Conv2D(3, 4, 3, padding=(1, 2)),
    sk.Conv2D(4, 6, (3, 2), stride=(2, 1), padding="same", dilation=(2, 1), groups=2),
    sk.Conv2D(4, 8, 3, dilation=2, groups=4, bias=False),
    sk.MaxPool2D((3, 2), stride=(1, 2), padding=(1, 1)),
    sk.MaxPool2D(2, padding="valid"),
    sk.MaxPool2D((2, 3), stride=1, padding=(1, 0), dilation=(2, 1), ceil_mode=True),
    sk.AvgPool2D((3, 2), stride=(1, 2), padding=(1, 1), count_include_pad=False),
    sk.AvgPool2D(2, padding="same"),
    sk.GlobalAvgPool2D(),
    sk.BatchNorm2d(3),
    sk.BatchNorm2d(3, eps=1e-3, momentum=0.2),
    sk.ReLU(),
    sk.LeakyReLU(0.2),
    sk.Sigmoid(),
    sk.Tanh(),
    sk.Dropout(0.3),
    sk.Dropout(0.25),
    sk.Flatten(),
    sk.Dense(7, 5, bias=False),
    sk.ReLU6(),
    sk.Hardsigmoid(),
    sk.Hardswish(),
    sk.SiLU(),
    sk.GELU(),
    sk.GELU("tanh"),
    sk.AdaptiveAvgPool2d(1),
    sk.AdaptiveAvgPool2d((3, 5)),
    sk.ChannelShuffle(3),
    sk.Identity(),
    sk.ZeroPad2d(1),
    sk.ZeroPad2d((1, 2, 0, 3)),
    sk.StochasticDepth(0.2),
    sk.StochasticDepth(0.5, "batch"),
    sk.Rescaling(1 / 255),
    sk.Rescaling([0.5, 2.0, -1.0], [0.1, 0.0, 3.0]),
]


@pytest.mark.parametrize("layer", LAYERS, ids=repr)
def test_describe_then_build_is_the_same_layer(layer):
    (entry,) = describe(sk.Sequential(layer))
    assert entry["kind"] == kind_of(layer).name
    (again,) = build([entry])
    assert type(again) is type(layer)
    assert again.config() == layer.config()
    for state in ("params", "buffers"):
        assert {k: v.shape for k, v in getattr(again, state)().items()} == \
            {k: v.shape for k, v in getattr(layer, state)().items()}, state


# the kinds that join or split tensors, in a graph: (name, layer, inputs)
GRAPH = [("a", sk.ChannelSlice(0, 2), "input"), ("b", sk.ChannelSlice(1, 3), "input"),
         ("sum", sk.Add(), ["a", "b"]), ("cat", sk.Concat(), ["sum", "input"]),
         ("gate", sk.AdaptiveAvgPool2d(1), "cat"), ("mul", sk.Multiply(), ["cat", "gate"])]


def test_describe_then_build_is_the_same_graph():
    graph = sk.Graph(GRAPH)
    spec = describe(graph)
    assert [s.get("name") for s in spec] == [n for n, _, _ in GRAPH]
    again = build(spec)
    assert [(n.name, type(n.layer), n.inputs) for n in again.nodes] == \
        [(n.name, type(n.layer), n.inputs) for n in graph.nodes]


def test_every_kind_has_a_layer_in_this_grid():
    graph_kinds = {kind_of(layer).name for _, layer, _ in GRAPH}
    assert {kind_of(layer).name for layer in LAYERS} | graph_kinds == set(KINDS)


def test_unknown_kind_and_unknown_field_are_named():
    with pytest.raises(ValueError, match=r"kind must be one of .*Received: \{'kind': 'mish'\}"):
        build([{"kind": "mish"}])
    with pytest.raises(ValueError, match=r"spec layer 0 \(relu\).*slope"):
        build([{"kind": "relu", "slope": 0.1}])


def test_a_layer_no_reference_mirrors_is_named():
    with pytest.raises(ValueError, match=r"Received: layer 1 = Softmax\(\)"):
        describe(sk.Sequential(sk.Flatten(), sk.Softmax()))


def test_geometry_validates_the_stack_and_resolves_pads():
    spec = describe(sk.Sequential(sk.Conv2D(1, 2, 3, stride=2, padding="same"), sk.Flatten(),
                                  sk.Dense(2 * 4 * 3, 3)))
    g = geometry(spec, (1, 7, 6))
    assert [x.out_shape for x in g] == [(2, 4, 3), (24,), (3,)]
    assert g[0].pads == (1, 1, 0, 1)  # TF's "same": the odd pixel bottom/right
    assert g[2].in_flat_source == (2, 4, 3)  # the dense rows follow that map's flatten order
    with pytest.raises(ValueError, match=r"spec layer 0: conv2d expects 1 channels"):
        geometry(spec, (2, 7, 6))
    with pytest.raises(ValueError, match=r"spec layer 2: dense expects 24 features"):
        geometry(spec, (1, 9, 6))
