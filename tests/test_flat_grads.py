"""The flat gradient buffer and the fused SGD step change no bit, and step aside whenever
their assumptions break: SGD over the flat buffer gives bit-identical parameters and velocity
to SGD parameter by parameter, and a gradient replaced by hand, a parameter array swapped, a
layer added, mixed dtypes, a layer used twice or a loaded velocity all still train correctly.
"""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk
from skylark.models import build_model


def _net(name="skylark", dtype="float32"):
    return build_model(name, (1, 12, 12), num_classes=4, seed=0, dtype=dtype)


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 12, 12), dtype=np.float32), rng.integers(0, 4, n)


def _train(net, opt, steps=4, between=None):
    for i in range(steps):
        x, y = _batch(seed=i)
        h, rng = x.astype(net.params()["0.weight"].dtype), np.random.default_rng(i)
        for layer in net:  # the forward, with the same dropout masks for every model
            if isinstance(layer, sk.Dropout):
                layer.use_mask(rng.random(h.shape) >= layer.p)
            h = layer.forward(h)
        _, d = sk.softmax_cross_entropy(h, y)
        opt.zero_grad()
        net.backward(d, input_grad=False)
        if between is not None:
            between(i)
        opt.step()
    return net


def _per_parameter(net):
    net.flat_grads = lambda: None  # the model as SGD sees one without a flat buffer
    return net


def _same(a, b):
    assert a.keys() == b.keys()  # as sets: a velocity's entries may come in another order
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # bit for bit: no tolerance


def _twins(prepare=None, between=None, model="skylark", momentum=0.9):
    """Train a model (the flat path where it applies) and its twin parameter by parameter in
    the same way: `prepare(net, opt)` first, `between(net, opt)(step)` before each update.
    Asserts both end bit-identical, parameters and velocity; returns the first (net, opt)."""
    pair = []
    for plain in (False, True):
        net = _per_parameter(_net(model)) if plain else _net(model)
        opt = sk.SGD(net, 0.05, momentum)
        if prepare is not None:
            prepare(net, opt)
        _train(net, opt, between=None if between is None else between(net, opt))
        pair.append((net, opt))
    (net, opt), (ref, opt_ref) = pair
    _same(net.params(), ref.params())
    _same(opt.state(), opt_ref.state())
    return net, opt


@pytest.mark.parametrize("model", ["skylark", "vgg-bn"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fused_step_is_bit_identical(model, momentum):
    fused, _ = _twins(model=model, momentum=momentum)
    assert fused.flat_grads() is not None  # the fused path really ran


def test_every_gradient_is_a_view_of_one_buffer():
    net = _net()
    net.zero_grad()
    buffer, entries = net.flat_grads()
    assert [name for name, _, _ in entries] == list(net.params())
    for (name, g), (_, p, _) in zip(net.grads().items(), entries, strict=True):
        assert np.shares_memory(g, buffer) and g.shape == p.shape, name
        assert not np.shares_memory(p, buffer), name  # parameters stay the layers' own


@pytest.mark.parametrize("disturb", ["layer zero_grad", "grad replaced", "param swapped"])
def test_broken_views_fall_back_and_stay_correct(disturb):
    def poke(model, _):
        def between(i):
            if i != 2:
                return
            dense = model[3]
            if disturb == "layer zero_grad":  # gradient thrown away on one layer: both agree
                dense.zero_grad()
            elif disturb == "grad replaced":
                dense.grads["bias"] = dense.grads["bias"] * 2
            else:  # a new parameter array: its update must land on it
                dense.weight = dense.weight.copy()
        return between

    _twins(between=poke)


def test_layers_added_after_a_step_are_trained():
    net = _net()
    opt = sk.SGD(net, 0.05, 0.9)
    _train(net, opt, steps=1)
    net.append(sk.Dense(4, 4, seed=3))
    ref = _per_parameter(sk.Sequential(*[_copy(layer) for layer in net.layers]))
    opt_ref = sk.SGD(ref, 0.05, 0.9)
    opt_ref.load_state(opt.state())
    opt.velocity = {}  # the new layer has no velocity yet: restart both from v = g
    opt_ref.velocity = {}
    _train(net, opt, steps=2)
    _train(ref, opt_ref, steps=2)
    assert net.flat_grads() is not None and len(net.flat_grads()[1]) == 5
    _same(net.params(), ref.params())


def _copy(layer):
    import copy
    return copy.deepcopy(layer)


def test_loaded_velocity_is_gathered_into_the_flat_buffer():
    _twins(prepare=lambda net, opt: opt.load_state(
        {k: np.full(p.shape, 0.01 * i, p.dtype) for i, (k, p) in enumerate(net.params().items())}))


def test_partial_velocity_falls_back():
    only = {"3.bias": np.full(4, 0.5, np.float32)}  # a velocity for one parameter only
    _twins(prepare=lambda net, opt: opt.load_state(only))


def test_mixed_dtypes_go_parameter_by_parameter():
    mixed = sk.Sequential(sk.Dense(3, 3, dtype="float32"), sk.Dense(3, 2, dtype="float64"))
    mixed.zero_grad()
    assert mixed.flat_grads() is None


def test_a_layer_in_two_nodes_is_refused():
    """A layer keeps one forward's cache: in two nodes, the second forward would overwrite
    what the first node's backward needs. One layer object, one node."""
    shared = sk.Dense(3, 3, dtype="float64")
    with pytest.raises(ValueError, match=r"node '2': this layer object is already node '0'"):
        sk.Sequential(shared, sk.ReLU(), shared)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_and_optimizer_train_like_the_original(how):
    """A copy's gradient views come back as separate arrays: the copy must rebuild its buffer,
    not keep feeding SGD a detached one."""
    import copy
    import pickle

    net = _net()
    opt = sk.SGD(net, 0.05, 0.9)
    _train(net, opt, steps=2)
    dup = copy.deepcopy if how == "deepcopy" else (lambda o: pickle.loads(pickle.dumps(o)))
    net2, opt2 = dup((net, opt))
    _train(net, opt)
    _train(net2, opt2)
    _same(net2.params(), net.params())
    _same(opt2.state(), opt.state())


def test_a_parameter_that_appears_is_trained():
    def add_bias(net, _):
        net.zero_grad()  # the flat buffer is built without the conv's bias (bias=False)
        net[0].bias = np.zeros(net[0].out_channels, np.float32)

    net, _ = _twins(prepare=add_bias)
    assert "0.bias" in net.params() and np.abs(net.params()["0.bias"]).max() > 0


def test_a_velocity_entry_replaced_by_hand_is_used():
    def reset(_, opt):
        def between(i):
            if i == 2:  # reset one parameter's momentum, as a user might
                opt.velocity["3.bias"] = np.zeros_like(opt.velocity["3.bias"])
        return between

    _twins(between=reset)


def test_a_velocity_of_another_dtype_goes_parameter_by_parameter():
    _twins(prepare=lambda net, opt: opt.load_state(
        {k: np.full(p.shape, 0.01, np.float64) for k, p in net.params().items()}))
