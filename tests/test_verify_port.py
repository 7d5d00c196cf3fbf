"""verify-port on ports whose every difference is known: the four bugs converters make (a BatchNorm
eps changed, a kernel transposed, a flatten in the wrong order, a "same" padding made
symmetric), each planted into an otherwise exact copy, must fail and name the layer; an exact
copy, and one with every BatchNorm folded into its convolution (as exporters do), must pass.

The ports here are skylark graphs (no framework needed), so these tests pin the matching and the
comparison; tests/test_verify_port_real.py runs real conversions (torch.onnx.export, Keras,
converters from PyPI).
"""

from __future__ import annotations

import numpy as np
import pytest

from reference.verify_port import format_report, match_layers, verify_port
from skylark.models import from_config

SHAPE = (2, 12, 12)
NET = [
    {"kind": "conv2d", "name": "stem", "in_channels": 2, "out_channels": 4, "kernel_size": 3,
     "padding": [1, 1], "bias": False},
    {"kind": "batchnorm2d", "name": "stem_bn", "num_features": 4},
    {"kind": "relu", "name": "stem_relu"},
    {"kind": "maxpool2d", "name": "pool", "kernel_size": 2},
    {"kind": "conv2d", "name": "down", "in_channels": 4, "out_channels": 6, "kernel_size": 3,
     "stride": 2, "padding": "same"},
    {"kind": "relu", "name": "down_relu"},
    {"kind": "flatten", "name": "flat"},
    {"kind": "dense", "name": "fc", "in_features": 6 * 3 * 3, "out_features": 5},
]


def _net(config=NET, state=None):
    net = from_config([dict(c) for c in config], dtype="float64", seed=3)
    if state is not None:
        net.load_state(state)
    else:  # running statistics away from (0, 1), so eps and the folding matter
        rng = np.random.default_rng(1)
        st = net.state()
        st["stem_bn.running_mean"] = rng.normal(0, 0.5, 4)
        st["stem_bn.running_var"] = rng.uniform(0.5, 2.0, 4)
        st["stem_bn.weight"] = rng.uniform(0.5, 1.5, 4)
        st["stem_bn.bias"] = rng.normal(0, 0.3, 4)
        net.load_state(st)
    return net


def _port(edit_config=None, edit_state=None):
    """SRC, and a copy of it with `edit_config(config)` / `edit_state(state)` applied."""
    src = _net()
    config, state = [dict(c) for c in NET], {k: v.copy() for k, v in src.state().items()}
    if edit_config:
        edit_config(config)
    if edit_state:
        edit_state(state)
    return src, _net(config, state)


def _run(src, dst):
    return verify_port(src, dst, input_shape=SHAPE)


def test_an_exact_copy_passes_every_tensor():
    r = _run(*_port())
    assert r["ok"], format_report(r)
    assert {m["by"] for m in r["mapping"]} == {"name"} and len(r["mapping"]) == len(NET)
    # every matched layer's output and output gradient, on both batches, and the parameter
    # gradients of the three weighted layers (2 + 2 + 2 + 2 + 1 of them)
    assert len(r["pairs"]) == 2 * (2 * len(NET) + 7)
    assert max(p["max_abs"] for p in r["pairs"]) == 0.0


def _layer(conf, name):
    return next(c for c in conf if c["name"] == name)


@pytest.mark.parametrize("bug, layer, where", [
    ("bn_eps", "stem_bn", "forward"),
    ("transposed_kernel", "down", "forward"),
    ("flatten_order", "fc", "forward"),
    ("symmetric_padding", "down", "forward"),
])
def test_each_planted_converter_bug_fails_naming_its_layer(bug, layer, where):
    def config(conf):
        if bug == "bn_eps":
            _layer(conf, "stem_bn")["eps"] = 1e-3  # a converter's default eps, not the model's
        if bug == "symmetric_padding":  # TF's "same" at stride 2 pads (0, 1): made (1, 1)
            _layer(conf, "down")["padding"] = [1, 1]

    def state(st):
        if bug == "transposed_kernel":  # (O, I, kh, kw) written as (O, I, kw, kh)
            st["down.weight"] = st["down.weight"].transpose(0, 1, 3, 2).copy()
        if bug == "flatten_order":  # the dense's inputs in HWC order where the map is CHW
            w = st["fc.weight"].reshape(5, 6, 3, 3)
            st["fc.weight"] = w.transpose(0, 2, 3, 1).reshape(5, -1).copy()

    r = _run(*_port(config, state))
    assert not r["ok"]
    first = r["first"]
    assert (first["src"], first["pass"]) == (layer, where), format_report(r)
    assert first["max_abs"] > 1e-6  # an O(1)-ish gap, far above the 1e-10 bar
    # every layer before it agrees: the divergence starts there
    before = [p for p in r["pairs"] if p["pass"] == "forward" and p["at"] < first["at"]]
    assert before and all(p["ok"] for p in before)
    text = format_report(r)
    assert f"FAIL: first divergence at layer {layer} <-> {layer}" in text


def test_a_batchnorm_folded_into_its_conv_is_looked_through_and_passes():
    src = _net()
    st = src.state()
    scale = st["stem_bn.weight"] / np.sqrt(st["stem_bn.running_var"] + 1e-5)
    folded = {"stem.weight": st["stem.weight"] * scale[:, None, None, None],
              "stem.bias": st["stem_bn.bias"] - st["stem_bn.running_mean"] * scale,
              **{k: v for k, v in st.items() if k.split(".")[0] in ("down", "fc")}}
    config = [dict(c) for c in NET if c["kind"] != "batchnorm2d"]
    config[0]["bias"] = True
    r = _run(src, _net(config, folded))
    assert r["ok"], format_report(r)
    stem = next(m for m in r["mapping"] if m["src"] == "stem")
    assert (stem["src_tensor"], stem["dst_tensor"]) == ("stem_bn", "stem")
    assert "batchnorm2d: 1 in SRC not matched, 1 looked through (folded into the layer before " \
        "on the other side)" in r["unmatched"]
    # the folding's rounding is all that differs: ~1e-16 relative, far under 1e-10
    assert 0 < max(p["max_abs"] for p in r["pairs"]) < 1e-13


def test_layers_renamed_by_a_converter_are_matched_by_position():
    renamed = [{**c, "name": f"node_{i}"} for i, c in enumerate(NET)]
    new = {c["name"]: f"node_{i}" for i, c in enumerate(NET)}
    src = _net()
    state = {f"{new[node]}.{field}": v for k, v in src.state().items()
             for node, field in [k.rsplit(".", 1)]}
    r = _run(src, _net(renamed, state))
    assert r["ok"], format_report(r)
    assert {m["by"] for m in r["mapping"]} == {"position"}
    assert [(m["src"], m["dst"]) for m in r["mapping"]][:2] == [("stem", "node_0"),
                                                                 ("stem_bn", "node_1")]


def test_match_layers_says_what_it_cannot_match():
    from reference.importers import Imported
    from reference.spec import describe

    a = describe(_net())
    b = [dict(s) for s in a]
    b.insert(3, {"kind": "relu", "name": "extra"})  # one more relu of that shape
    for i, s in enumerate(b):
        s["name"] = f"n{i}"
        s.pop("inputs", None)
    ia, ib = Imported(a, {}, SHAPE, "skylark"), Imported(b, {}, SHAPE, "skylark")
    mapping, unmatched = match_layers(ia, ib, SHAPE)
    assert "relu of output (4, 12, 12): 1 in SRC, 2 in DST (not matched by position)" in \
        unmatched
    assert "stem_relu" not in {m["src"] for m in mapping}
    assert "down_relu" in {m["src"] for m in mapping}  # another shape: still matched


def _fold(state, conv, bn, eps=1e-5):
    """`conv` (no bias) followed by `bn` in evaluation mode, as one conv with a bias."""
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + eps)
    return {f"{conv}.weight": state[f"{conv}.weight"] * scale[:, None, None, None],
            f"{conv}.bias": state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale}


def test_a_folded_model_as_src_passes_against_the_unfolded_one():
    src = _net()
    st = src.state()
    folded = {**_fold(st, "stem", "stem_bn"),
              **{k: v for k, v in st.items() if k.split(".")[0] in ("down", "fc")}}
    config = [dict(c) for c in NET if c["kind"] != "batchnorm2d"]
    config[0]["bias"] = True
    r = _run(_net(config, folded), src)  # the folded one is the source this time
    assert r["ok"], format_report(r)
    stem = next(m for m in r["mapping"] if m["src"] == "stem")
    assert (stem["src_tensor"], stem["dst_tensor"]) == ("stem", "stem_bn")


def test_a_partly_folded_model_looks_through_only_the_folded_batchnorm():
    """Exporters fold a BatchNorm that follows a conv and keep one that follows anything else:
    both sides still have BatchNorms, and only the folded one is looked through."""
    two_bn = [dict(c) for c in NET]
    two_bn.insert(4, {"kind": "batchnorm2d", "name": "pool_bn", "num_features": 4})
    src = _net(two_bn, None)
    st = {**src.state(), "pool_bn.running_var": np.full(4, 1.7)}
    src.load_state(st)
    config = [dict(c) for c in two_bn if c["name"] != "stem_bn"]
    config[0]["bias"] = True
    folded = {**_fold(st, "stem", "stem_bn"),
              **{k: v for k, v in st.items() if k.split(".")[0] in ("pool_bn", "down", "fc")}}
    r = _run(src, _net(config, folded))
    assert r["ok"], format_report(r)
    by_src = {m["src"]: m for m in r["mapping"]}
    assert by_src["stem"]["src_tensor"] == "stem_bn"
    assert by_src["pool_bn"]["src_tensor"] == "pool_bn"  # kept on both sides: its own pair


def test_two_models_with_nothing_in_common_still_compare_their_outputs():
    other = [{"kind": "flatten", "name": "f"}, {"kind": "dense", "name": "d",
                                                  "in_features": 2 * 12 * 12, "out_features": 5}]
    r = _run(_net(), from_config(other, dtype="float64"))
    assert not r["ok"]
    assert [m["by"] for m in r["mapping"]][-1] == "output"
    assert r["first"]["src"] == "fc" and r["first"]["dst"] == "d"


def test_branches_listed_in_another_order_are_paired_by_shape():
    """Two branches (a 1x1 and a 3x3 conv) written in the other order by a converter."""
    branches = [
        {"kind": "conv2d", "name": "a", "in_channels": 2, "out_channels": 3, "kernel_size": 1},
        {"kind": "conv2d", "name": "b", "in_channels": 2, "out_channels": 3, "kernel_size": 3,
         "padding": [1, 1], "inputs": ["input"]},
        {"kind": "add", "name": "sum", "inputs": ["a", "b"]},
        {"kind": "flatten", "name": "flat"},
        {"kind": "dense", "name": "fc", "in_features": 3 * 12 * 12, "out_features": 5},
    ]
    swapped = [{**branches[1], "name": "n0", "inputs": ["input"]},
               {**branches[0], "name": "n1", "inputs": ["input"]},
               {"kind": "add", "name": "n2", "inputs": ["n1", "n0"]},
               {"kind": "flatten", "name": "n3"}, {**branches[4], "name": "n4"}]
    src = from_config(branches, dtype="float64", seed=1)
    rename = {"b": "n0", "a": "n1", "fc": "n4"}
    state = {f"{rename[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in src.state().items()}
    dst = from_config(swapped, dtype="float64")
    dst.load_state(state)
    r = _run(src, dst)
    assert r["ok"], format_report(r)
    assert {(m["src"], m["dst"]) for m in r["mapping"]} >= {("a", "n1"), ("b", "n0")}


def test_models_with_different_outputs_are_a_usage_error():
    other = [dict(c) for c in NET]
    other[-1] = {**other[-1], "out_features": 7}
    with pytest.raises(ValueError, match=r"outputs differ in shape. Received: SRC \(5,\), DST"):
        _run(_net(), from_config(other, dtype="float64"))
