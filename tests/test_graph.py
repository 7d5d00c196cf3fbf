"""skylark.Graph: building, running, the fan-out's added gradients, the merge layers against
loop oracles and finite differences, and every malformed graph as a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest

import skylark as sk
from skylark.models import build_model, from_config, to_config

from gradcheck import FD_RTOL, check_gradients, numeric_grad, rel_error, sample_indices


def _residual(dtype="float64"):
    """conv -> relu -> + (the conv's output again) -> flatten -> dense: a fan-out of 'c'."""
    g = sk.Graph()
    g.add("c", sk.Conv2D(2, 3, 3, padding=1, dtype=dtype, seed=1))
    g.add("r", sk.ReLU())
    g.add("add", sk.Add(), ["r", "c"])
    g.add("f", sk.Flatten())
    g.add("d", sk.Dense(3 * 5 * 4, 4, dtype=dtype, seed=2))
    return g


def _model_fb(model, cot):
    def fb(x):
        y = model.forward(x)
        model.zero_grad()
        dx = model.backward(cot)
        return float(np.sum(cot * y)), dx, {k: g.copy() for k, g in model.grads().items()}

    return fb


# --- building ---------------------------------------------------------------------------------


def test_default_inputs_chain_and_names_follow_the_nodes():
    g = _residual()
    assert [n.inputs for n in g.nodes] == [("input",), ("c",), ("r", "c"), ("add",), ("f",)]
    assert list(g.params()) == ["c.weight", "c.bias", "d.weight", "d.bias"]
    assert g["add"] is g[2] and isinstance(g[2], sk.Add)
    assert "(add): Add() <- r, c" in repr(g) and "(r): ReLU()\n" in repr(g)


def test_sequential_is_the_chain_graph_with_the_old_names():
    net = sk.skylark_cnn()
    assert isinstance(net, sk.Graph) and [n.name for n in net.nodes] == ["0", "1", "2", "3"]
    assert list(net.state()) == ["0.weight", "3.weight", "3.bias"]
    assert to_config(net) == [{"kind": layer.kind, **layer.config()} for layer in net]


@pytest.mark.parametrize("name, layer, inputs, match", [
    ("input", sk.ReLU(), None, r"not 'input'. Received: name='input'"),
    ("a b", sk.ReLU(), None, r"Received: name='a b'"),
    ("c", sk.ReLU(), None, r"node names must be unique. Received: a second node 'c'"),
    ("x", sk.ReLU(), "nowhere", r"node 'x': input 'nowhere' is not 'input' or a node added "
                                r"before it. Received: inputs='nowhere'"),
    ("x", sk.Add(), ["c"], r"node 'x': Add takes two or more inputs. Received: inputs=\['c'\]"),
    ("x", sk.Multiply(), ["c", "c", "c"], r"node 'x': Multiply takes 2 inputs"),
    ("x", sk.ReLU(), ["c", "c"], r"node 'x': ReLU takes 1 input. Received"),
    ("x", "relu", None, r"node 'x' must hold a skylark layer. Received: 'relu'"),
    ("x", sk.ReLU(), 5, r"node 'x': inputs is a node name or a list of them. Received: "
                        r"inputs=5"),
])
def test_bad_nodes_are_refused_naming_the_node_and_value(name, layer, inputs, match):
    g = sk.Graph()
    g.add("c", sk.Conv2D(1, 2, 3))
    with pytest.raises(ValueError, match=match):
        g.add(name, layer, inputs)
    assert len(g) == 1  # nothing half-added


def test_a_dangling_node_is_refused_at_the_first_forward():
    g = sk.Graph()
    g.add("a", sk.ReLU())
    g.add("b", sk.Tanh(), "input")  # nothing reads 'a'
    with pytest.raises(ValueError, match=r"node 'a' is dangling: no node reads its output"):
        g.forward(np.zeros((1, 2)))


# --- running: forward, and the fan-out's gradients ---------------------------------------------


def test_forward_equals_the_same_computation_by_hand():
    g = _residual()
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 4))
    c = g["c"].forward(x)
    want = g["d"].forward((np.maximum(c, 0) + c).reshape(2, -1))
    np.testing.assert_array_equal(g.forward(x), want)
    assert set(g.forward_all(x)) == {"input", "c", "r", "add", "f", "d"}


def test_fan_out_gradients_add_up_finite_differences():
    """'c' feeds the ReLU and the Add: its gradient is the SUM of both readers'. A graph that
    kept only the last reader's gradient (overwrote instead of added) fails this."""
    g = _residual()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 5, 4))
    cot = rng.standard_normal((2, 4))
    errors = check_gradients(_model_fb(g, cot), x, g.params())
    assert max(errors.values()) < FD_RTOL, errors


def test_fan_out_of_the_input_itself_and_input_grad_false():
    """The model's input read by two nodes: d.input adds both; without an input gradient the
    parameter gradients are the same and nothing is returned."""
    g = sk.Graph()
    g.add("a", sk.Conv2D(1, 2, 3, padding=1, dtype="float64", seed=1), "input")
    g.add("b", sk.Conv2D(1, 2, 1, dtype="float64", seed=2), "input")
    g.add("cat", sk.Concat(), ["a", "b"])
    g.add("f", sk.Flatten())
    g.add("d", sk.Dense(4 * 3 * 3, 3, dtype="float64", seed=3))
    rng = np.random.default_rng(2)
    x, cot = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((2, 3))
    errors = check_gradients(_model_fb(g, cot), x, g.params())
    assert max(errors.values()) < FD_RTOL, errors
    g.forward(x)
    g.zero_grad()
    g.backward(cot)
    want = {k: v.copy() for k, v in g.grads().items()}
    g.zero_grad()
    assert g.backward(cot, input_grad=False) is None
    for k, v in g.grads().items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)


def test_backward_all_gives_each_output_its_whole_gradient():
    g = _residual()
    rng = np.random.default_rng(3)
    x, cot = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 4))
    g.forward(x)
    g.zero_grad()
    _, seen = g.backward_all(cot)
    d_r = g["add"].backward(seen["add"])[0]
    np.testing.assert_array_equal(seen["r"], d_r)
    # d.out.c = through the ReLU + straight from the Add
    np.testing.assert_allclose(seen["c"], g["r"].backward(seen["r"]) + seen["add"], rtol=0)


# --- the merge layers: loop oracles, finite differences, errors --------------------------------


def _loop_add(xs):
    y = np.zeros_like(xs[0])
    for idx in np.ndindex(*y.shape):
        y[idx] = sum(x[idx] for x in xs)
    return y


def _loop_concat(xs):
    n, _, *rest = xs[0].shape
    y = np.zeros((n, sum(x.shape[1] for x in xs), *rest))
    c0 = 0
    for x in xs:
        for c in range(x.shape[1]):
            y[:, c0 + c] = x[:, c]
        c0 += x.shape[1]
    return y


def _loop_multiply(x, gate):
    y = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        gi = tuple(i if s > 1 else 0 for i, s in zip(idx, gate.shape, strict=True))
        y[idx] = x[idx] * gate[gi]
    return y


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_merge_layers_match_their_loop_oracles(kind):
    rng = np.random.default_rng(4)
    def draw(*shape):
        return np.full(shape, 0.5) if kind == "ties" else rng.standard_normal(shape)
    xs = [draw(2, 3, 4, 5) for _ in range(3)]
    np.testing.assert_array_equal(sk.Add().forward(xs), _loop_add(xs))
    cs = [draw(2, 1, 4, 5), draw(2, 3, 4, 5), draw(2, 2, 4, 5)]
    np.testing.assert_array_equal(sk.Concat().forward(cs), _loop_concat(cs))
    x, gate = draw(2, 3, 4, 5), draw(2, 3, 1, 1)
    np.testing.assert_array_equal(sk.Multiply().forward([x, gate]), _loop_multiply(x, gate))
    np.testing.assert_array_equal(sk.ChannelSlice(1, 3).forward(x), x[:, 1:3])


@pytest.mark.parametrize("layer, shapes", [
    (sk.Add(), [(2, 3, 4, 5)] * 3),
    (sk.Concat(), [(2, 1, 4, 5), (2, 3, 4, 5), (2, 2, 4, 5)]),
    (sk.Concat(), [(2, 3), (2, 4)]),  # flat features
    (sk.Multiply(), [(2, 3, 4, 5), (2, 3, 1, 1)]),  # squeeze-excite
    (sk.Multiply(), [(2, 3, 4, 5), (2, 1, 4, 1)]),  # another broadcast
    (sk.Multiply(), [(2, 3, 4, 5), (2, 3, 4, 5)]),
], ids=repr)
def test_merge_layers_gradients_finite_differences_random_cotangent(layer, shapes):
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal(s) for s in shapes]
    y = layer.forward(xs)
    cot = rng.standard_normal(y.shape)
    grads = layer.backward(cot)
    for k, x in enumerate(xs):
        num = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            old = x[idx]
            x[idx] = old + 1e-6
            fp = np.sum(cot * layer.forward(xs))
            x[idx] = old - 1e-6
            fm = np.sum(cot * layer.forward(xs))
            x[idx] = old
            num[idx] = (fp - fm) / 2e-6
        assert grads[k].shape == x.shape
        assert rel_error(grads[k], num) < FD_RTOL, k


def test_channel_slice_gradient_is_zero_outside_its_channels():
    layer = sk.ChannelSlice(1, 3)
    x = np.random.default_rng(6).standard_normal((2, 4, 3, 3))
    layer.forward(x)
    dy = np.ones((2, 2, 3, 3))
    dx = layer.backward(dy)
    assert dx[:, [0, 3]].sum() == 0 and np.array_equal(dx[:, 1:3], dy)


@pytest.mark.parametrize("layer, xs, match", [
    (sk.Add(), [np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 4))],
     r"Add needs inputs of one shape. Received: shapes \[\(2, 3, 3\), \(2, 3, 4\)\]"),
    (sk.Concat(), [np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 4, 3))],
     r"every other axis must agree. Received: shapes \[\(2, 3, 3\), \(2, 4, 3\)\]"),
    (sk.Multiply(), [np.zeros((1, 4, 3, 3)), np.zeros((1, 3, 1, 1))],
     r"gate must have x's size or 1 on each axis. Received: x \(4, 3, 3\), gate \(3, 1, 1\)"),
    (sk.Add(), [np.zeros((1, 2), np.float32), np.zeros((1, 2))],
     r"one float dtype. Received: dtypes \['float32', 'float64'\]"),
    (sk.Add(), np.zeros((2, 2)), r"Add takes a list of inputs. Received: ndarray"),
])
def test_merge_layers_refuse_what_does_not_join(layer, xs, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(xs)


@pytest.mark.parametrize("args, match", [
    ((2, 2), r"ChannelSlice needs start < stop. Received: start=2, stop=2"),
    ((-1, 2), r"ChannelSlice's start must be an int >= 0. Received: start=-1"),
    ((0, 1.5), r"ChannelSlice's stop must be an int >= 0. Received: stop=1.5"),
])
def test_channel_slice_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        sk.ChannelSlice(*args)


# --- JSON graphs ------------------------------------------------------------------------------


def test_the_documented_json_graph_builds_and_trains_a_step():
    from pathlib import Path

    path = Path(__file__).parent.parent / "docs" / "example_graph.json"
    net = build_model(str(path), (1, 28, 28), dtype="float64")
    assert isinstance(net, sk.Graph) and not isinstance(net, sk.Sequential)
    assert any(len(n.inputs) > 1 for n in net.nodes)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
    y = net.forward(x)
    net.zero_grad()
    net.backward(np.ones_like(y))
    assert all(np.abs(g).sum() > 0 for g in net.grads().values())


def _write(tmp_path, layers):
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"layers": layers}))
    return str(p)


RELU, FLAT = {"kind": "relu"}, {"kind": "flatten"}


@pytest.mark.parametrize("layers, match", [
    ([{**RELU, "name": "a", "inputs": ["b"]}, {**RELU, "name": "b", "inputs": ["a"]}],
     r"the graph has a cycle: a -> b -> a. Received: node 'a' with inputs=\['b'\]"),
    ([{**RELU, "name": "a", "inputs": ["b"]}, {**RELU, "name": "b", "inputs": ["input"]}],
     r"node 'a' reads 'b', which is listed after it: list the nodes in the order they run"),
    ([{**RELU, "name": "a", "inputs": ["ghost"]}],
     r"node 'a': input 'ghost' is not 'input' or a node added before it"),
    ([{**RELU, "name": "a"}, {**RELU, "name": "b", "inputs": ["input"]}],
     r"node 'a' is dangling"),
    ([{**RELU, "name": "a"}, {"kind": "conv2d", "in_channels": 1, "out_channels": 2,
                              "kernel_size": 3, "name": "b", "inputs": ["input"]},
      {"kind": "add", "name": "sum", "inputs": ["a", "b"]}],
     r"node 'sum' \(add\): Add needs inputs of one shape. Received: shapes "
     r"\[\(1, 28, 28\), \(2, 26, 26\)\]"),
    ([{**RELU, "name": "a"}, {"kind": "maxpool2d", "kernel_size": 2, "name": "b",
                              "inputs": ["input"]},
      {"kind": "concat", "name": "cat", "inputs": ["a", "b"]}],
     r"node 'cat' \(concat\): Concat joins along the channels; every other axis must agree"),
    ([{**RELU, "name": "a b"}], r"Received: name='a b'"),
    ([{**RELU, "name": "a", "inputs": 5}],
     r"node 'a': inputs is a node name or a list of them. Received: inputs=5"),
    ([{**RELU, "name": "a", "inputs": [["input"]]}], r"Received: inputs=\[\['input'\]\]"),
    ([{**RELU, "name": "a"}, {**RELU, "name": "a"}],
     r"node names must be unique. Received: a second node 'a'"),
    ([{**RELU, "name": "a", "inputs": "input"}, {**RELU, "name": "input"}],
     r"layer 1: a node name is a string, not 'input'. Received: name='input'"),
    # an order error and a cycle: the cycle is named first (reordering cannot mend it)
    ([{**RELU, "name": "a", "inputs": ["b"]}, {**RELU, "name": "b", "inputs": ["input"]},
      {**RELU, "name": "c", "inputs": ["d"]}, {**RELU, "name": "d", "inputs": ["c"]}],
     r"the graph has a cycle: c -> d -> c"),
])
def test_malformed_json_graphs_are_one_line_errors_naming_the_node(tmp_path, layers, match):
    with pytest.raises(ValueError, match=match) as e:
        build_model(_write(tmp_path, layers), (1, 28, 28))
    assert "\n" not in str(e.value)


def test_graph_config_round_trips_and_reseeds_per_node():
    net = build_model("resnet", (3, 32, 32), dtype="float64", seed=3)
    config = json.loads(json.dumps(to_config(net)))
    again = from_config(config, dtype="float64", seed=3)
    assert to_config(again) == config and list(again.state()) == list(net.state())
    for k, v in net.params().items():
        np.testing.assert_array_equal(again.params()[k], v, err_msg=k)


# --- the zoo ----------------------------------------------------------------------------------

ZOO = ["resnet", "mobilenet-v2", "densenet", "shufflenet", "inception", "efficientnet"]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=str)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_build_run_and_checkpoint(name, shape, tmp_path):
    net = build_model(name, shape, num_classes=7, dtype="float64")
    assert not isinstance(net, sk.Sequential) and any(len(n.inputs) > 1 for n in net.nodes)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    y = net.forward(x)
    assert y.shape == (2, 7)
    net.zero_grad()
    dx = net.backward(np.random.default_rng(1).standard_normal(y.shape))
    assert dx.shape == x.shape and all(np.isfinite(g).all() for g in net.grads().values())
    path = net.save(tmp_path / "ckpt.npz", {"model": to_config(net)})
    again = build_model(name, shape, num_classes=7, dtype="float64", seed=5)
    again.load(path)
    np.testing.assert_array_equal(again.eval().forward(x), net.eval().forward(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_gradients_finite_differences(name):
    """Every parameter of each zoo model (a sample of each tensor's entries) and the input,
    against centred differences, in evaluation mode (BatchNorm on fixed statistics: a
    training-mode BN's batch statistics are part of the function too, and are checked there
    in tests/test_batchnorm.py)."""
    net = build_model(name, (3, 12, 12), num_classes=3, dtype="float64").eval()
    rng = np.random.default_rng(7)
    # BatchNorm's fresh state (weight 1, bias 0, mean 0, var 1) is the identity in eval, and a
    # depthwise conv of ReLU outputs is often exactly 0 (all its taps zero): the next ReLU
    # would sit ON its kink, where a difference quotient averages two slopes. Random BN state
    # moves those zeros off the kinks.
    for layer in net:
        if isinstance(layer, sk.BatchNorm2d):
            for arr, lo, hi in ((layer.weight, 0.5, 1.5), (layer.bias, -0.5, 0.5),
                                (layer.running_mean, -0.5, 0.5), (layer.running_var, 0.5, 2)):
                arr[...] = rng.uniform(lo, hi, arr.shape)
    x, cot = rng.standard_normal((2, 3, 12, 12)), rng.standard_normal((2, 3))
    fb = _model_fb(net, cot)
    _, dx, grads = fb(x)
    # h = 1e-6, not 1e-5: a step moves thousands of ReLU/ReLU6 inputs, and the chance that
    # one crosses its kink (the difference quotient then straddles two slopes) grows with h.
    # The quotient's own rounding is ~eps64 * F / h with F = sum|cot * y| (f's terms):
    # measured 2e-12 absolute on a 7.8e-8 gradient, 2.5e-5 of it. So the bar adds an absolute
    # floor of 100 * eps64 * F / h to the relative one; a real bug is O(1) of the gradient.
    h = 1e-6
    floor = 100 * np.finfo(np.float64).eps * float(np.abs(cot * net.forward(x)).sum()) / h
    bad = {}
    for k, arr, analytic in [("input", x, dx), *((k, p, grads[k]) for k, p in
                                                   net.params().items())]:
        idx = sample_indices(arr.size, rng, limit=12)  # 12 entries a tensor, and both ends
        num = numeric_grad(lambda: fb(x)[0], arr, idx, h)
        a = np.asarray(analytic).reshape(-1)[idx]
        worst = float(np.abs(a - num).max())
        if worst > FD_RTOL * float(np.abs(a).max()) + floor:
            bad[k] = (worst, float(np.abs(a).max()))
    assert not bad, (bad, floor)


def _frozen_gradients(net, monkeypatch) -> None:
    """Every layer's backward receives a read-only dy: a write into it raises."""
    for layer in net:
        def frozen(dy, *args, _backward=layer.backward, **kwargs):
            dy = np.asarray(dy).view()
            dy.flags.writeable = False
            return _backward(dy, *args, **kwargs)

        monkeypatch.setattr(layer, "backward", frozen)


def _every_other_kind():
    return sk.Sequential(
        sk.Conv2D(3, 4, 3, padding="same", seed=1, dtype="float64"), sk.LeakyReLU(0.1),
        sk.MaxPool2D(2, padding=1), sk.Tanh(), sk.AvgPool2D(3, 1, padding="same"),
        sk.Hardswish(), sk.Hardsigmoid(), sk.GELU(), sk.GELU("tanh"), sk.Identity(),
        sk.Dropout(0.2), sk.Flatten(), sk.Dense(4 * 7 * 7, 5, seed=2, dtype="float64"),
        sk.Softmax())


@pytest.mark.parametrize("name", [*ZOO, "every_other_kind"])
def test_no_backward_writes_into_the_gradient_it_is_given(name, monkeypatch):
    """The layer contract a graph relies on: Add hands the same dy to every input, and a fan-out
    keeps one reader's gradient while the next is computed, so a backward that wrote into its
    dy would corrupt another node's gradient."""
    net = _every_other_kind() if name == "every_other_kind" else \
        build_model(name, (3, 12, 12), dtype="float64")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 12, 12))
    y = net.forward(x)
    cot = rng.standard_normal(y.shape)
    net.zero_grad()
    want = net.backward(cot), {k: g.copy() for k, g in net.grads().items()}
    _frozen_gradients(net, monkeypatch)
    net.zero_grad()  # the same forward's caches, backward again on read-only gradients
    dx = net.backward(cot)
    np.testing.assert_array_equal(dx, want[0])
    for k, g in net.grads().items():
        np.testing.assert_array_equal(g, want[1][k], err_msg=k)


def test_a_float64_graph_whose_first_node_has_no_parameters_builds(tmp_path):
    """build_model's trial forward runs in the model's dtype (it once fed float32 zeros to a
    graph starting with a parameter-free layer, and its Add refused float32 + float64)."""
    path = _write(tmp_path, [{**RELU, "name": "a"}, {"kind": "add", "name": "sum",
                                                     "inputs": ["a", "input"]},
                             {"kind": "flatten"}, {"kind": "dense", "in_features": 64,
                                                    "out_features": 10}])
    net = build_model(path, (1, 8, 8), dtype="float64")
    assert net.forward(np.zeros((1, 1, 8, 8))).dtype == np.float64


def test_layers_is_read_only_and_slices_give_layers():
    net = sk.skylark_cnn()
    assert isinstance(net.layers, tuple)  # net.layers.append(...) fails loudly, not silently
    assert net[1:3] == [net[1], net[2]]
