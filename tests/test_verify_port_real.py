"""verify-port on real conversions: a torch module against its torch.onnx.export (dynamo and
legacy exporters, which fold every BatchNorm into its convolution), a Keras model against
tf2onnx's ONNX of it (a third-party converter), and the four bugs converters make planted into
a real export, each named at its layer.

The source modules are float64 and exported in float64, so the comparison runs at the float64
bar (1e-10 relative; reference.budgets): the exports' folding and reordering leave ~1e-16, the
planted bugs move their layer by far more than 1e-6.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from reference.verify_port import format_report, verify_port
from tests.converted import keras_to_onnx, torch_to_onnx

SHAPE = (3, 16, 16)


class Net(nn.Module):
    """The traps in one small CNN: a BatchNorm (exporters fold it), TF's "same" at stride 2 as
    an asymmetric zero-pad (bottom and right only), a max-pool, a flatten before a Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.conv2 = nn.Conv2d(8, 6, 3, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(self.pad(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_net() -> nn.Module:
    """float64, with running statistics away from (0, 1) so an eps or a folding shows."""
    torch.manual_seed(0)
    m = Net().double()
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-0.5, 0.5)
        m.bn1.running_var.uniform_(0.5, 2.0)
        m.bn1.weight.uniform_(0.5, 1.5)
        m.bn1.bias.uniform_(-0.3, 0.3)
    return m.eval()


def _export(tmp_path, dynamo=True):
    return torch_to_onnx(make_net(), SHAPE, tmp_path / "net.onnx", dynamo=dynamo,
                         dtype=torch.float64)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
def test_a_torch_module_and_its_onnx_export_agree(tmp_path, dynamo):
    r = verify_port(make_net(), _export(tmp_path, dynamo), input_shape=SHAPE)
    assert r["ok"], format_report(r)
    assert r["dtype"] == "float64"
    # the exporter folded bn1 into conv1: the ONNX conv is compared with torch's bn1 output
    conv1 = next(m for m in r["mapping"] if m["src"] == "conv1")
    assert conv1["src_tensor"] == "bn1"
    assert {m["kind"] for m in r["mapping"]} >= {"conv2d", "maxpool2d", "flatten", "dense"}
    assert all(p["ok"] for p in r["pairs"]) and len(r["pairs"]) > 20


def _edit(path, initializer=None, fn=None, attr=None):
    """Rewrite one initializer (`fn` of its array) or one node attribute (`attr`: (op_type,
    index among that op's nodes, name, value)) of the ONNX file at `path`."""
    model = onnx.load(str(path))
    if initializer is not None:
        for i, t in enumerate(model.graph.initializer):
            if t.name == initializer:
                new = numpy_helper.from_array(np.ascontiguousarray(fn(numpy_helper.to_array(t))),
                                              t.name)
                model.graph.initializer[i].CopyFrom(new)
                break
        else:
            raise AssertionError(f"no initializer {initializer!r}")
    if attr is not None:
        op, k, name, value = attr
        node = [n for n in model.graph.node if n.op_type == op][k]
        for a in node.attribute:
            if a.name == name:
                a.CopyFrom(onnx.helper.make_attribute(name, value))
    onnx.save(model, str(path))
    return path


def _first(r):
    assert not r["ok"]
    return r["first"]["src"], r["first"]["pass"]


def test_a_kernel_transposed_by_the_converter_is_named(tmp_path):
    path = _edit(_export(tmp_path), "conv2.weight", lambda w: w.transpose(0, 1, 3, 2))
    assert _first(verify_port(make_net(), path, input_shape=SHAPE)) == ("conv2", "forward")


def test_a_flatten_in_the_wrong_order_is_named(tmp_path):
    # the Linear's inputs in HWC order (Keras' flatten) where torch's map is CHW
    def hwc(w):
        return w.reshape(5, 6, 4, 4).transpose(0, 2, 3, 1).reshape(5, -1)

    path = _edit(_export(tmp_path), "fc.weight", hwc)
    assert _first(verify_port(make_net(), path, input_shape=SHAPE)) == ("fc", "forward")


def test_a_padding_made_symmetric_is_named(tmp_path):
    # the exporter wrote the zero-pad into conv2's pads, (0, 0) before and (1, 1) after; a
    # converter that only knows symmetric padding writes (1, 1, 1, 1): the same output size
    path = _export(tmp_path)
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    pads = [list(a.ints) for a in convs[1].attribute if a.name == "pads"]
    assert pads == [[0, 0, 1, 1]], pads  # what the exporter wrote (the premise of this test)
    _edit(path, attr=("Conv", 1, "pads", [1, 1, 1, 1]))
    assert _first(verify_port(make_net(), path, input_shape=SHAPE)) == ("conv2", "forward")


def test_a_batchnorm_eps_changed_by_the_converter_is_named(tmp_path):
    # torch's exporters fold the BatchNorm away; skylark's exporter keeps it (a BatchNormalization
    # node), so this port goes torch -> skylark import -> `skylark export --to onnx`
    from reference.importers.torch_source import import_torch
    from reference.porting import export_weights

    # (a float32 export: skylark's float64 ONNX spells Conv out in Einsum ops for onnxruntime,
    # which the importer does not read back; the comparison then runs at the float32 budgets)
    net = import_torch(make_net(), input_shape=SHAPE).graph("float32")
    path = tmp_path / "sk.onnx"
    export_weights(net, "onnx", path, input_shape=SHAPE)
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("BatchNormalization") == 1
    clean = verify_port(make_net(), path, input_shape=SHAPE)
    assert clean["ok"], format_report(clean)
    # 1e-5 -> 1e-1 against running variances in [0.5, 2]: bn1's output moves by 2.5-10%
    _edit(path, attr=("BatchNormalization", 0, "epsilon", 1e-1))
    r = verify_port(make_net(), path, input_shape=SHAPE)
    assert _first(r) == ("bn1", "forward"), format_report(r)


def test_a_keras_model_and_tf2onnx_port_agree(tmp_path):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(5)(h))
    bn = model.layers[2]
    bn.set_weights([w + np.random.default_rng(1).uniform(0.1, 0.5, w.shape)
                    for w in bn.get_weights()])
    src = tmp_path / "k.keras"
    model.save(src)
    dst = keras_to_onnx(model, tmp_path / "k.onnx")
    r = verify_port(str(src), str(dst))
    assert r["ok"], format_report(r)
    assert r["input_shape"] == SHAPE and r["dtype"] == "float32"
    assert {m["kind"] for m in r["mapping"]} >= {"conv2d", "dense"}
