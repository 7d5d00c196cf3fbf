"""Files other tools write, made in a temporary folder for the import tests (and verify-port):
torch modules through torch.onnx.export, Keras models through tf2onnx, torchvision's models.

    path = torch_to_onnx(module, (3, 64, 64), tmp_path / "net.onnx")          # dynamo exporter
    path = torch_to_onnx(module, (3, 64, 64), tmp_path / "net.onnx", dynamo=False)   # legacy
    path = keras_to_onnx(model, tmp_path / "net.onnx")                         # NHWC input "x"
    models = torchvision_models()                              # construct with weights=None

Every exporter warns (deprecations, its own progress lines): silenced here, since the suite
turns warnings into errors and these are not ours.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings


def torch_to_onnx(module, input_shape, path, *, dynamo: bool = True, batch: int = 2,
                  opset: int = 18, dtype=None):
    """`module` (in eval mode) exported for (batch, *input_shape) inputs; returns `path`."""
    import torch

    module = module.eval()
    x = torch.zeros((batch, *input_shape), dtype=dtype or torch.float32)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=dynamo, opset_version=opset,
                          input_names=["x"], output_names=["logits"])
    return path


def keras_to_onnx(model, path, opset: int = 17):
    """A Keras model (NHWC input) through tf2onnx: its tf.function traced, the Keras 3 path of
    tf2onnx (`from_keras`) fails on Keras 3's tensor names. Input "x" (None, H, W, C)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf2onnx

    sig = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="x")]
    fn = tf.function(lambda x: model(x, training=False), input_signature=sig)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset,
                                      output_path=str(path))
    return path


def torchvision_models():
    """torchvision.models (reference.importers.torchvision_compat: beside a CPU torch)."""
    from reference.importers.torchvision_compat import load

    return load().models


def onnx_to_torch(path):
    """The ONNX file as a torch module through onnx2torch (it needs torchvision, and reads only
    the op versions it knows: Reshape up to opset 14, so a dynamo export fails)."""
    from reference.importers.torchvision_compat import load

    load()
    import onnx2torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return onnx2torch.convert(str(path)).eval()


def as_float64(path):
    """The ONNX file's math in float64 (an onnx.ModelProto): every float32 constant, input,
    output and Cast made float64. Float32 attributes that stand for exact constants are
    replaced by float64 ops of the decimal they were written from (HardSigmoid's alpha
    0.16666667 is torch's 1/6, LeakyReLU's 0.2 is 0.2; HardSwish, whose ONNX function body is
    HardSigmoid with a float32 alpha, too), as the importer reads them."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = m.graph
    _ceil_as_pads(g)

    def f64(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)

    for i, t in enumerate(g.initializer):
        if t.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(f64(t))
    nodes, k = [], 0
    for n in g.node:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        for x in n.attribute:
            if x.name == "value" and x.t.data_type == TensorProto.FLOAT:
                x.t.CopyFrom(f64(x.t))
            if n.op_type == "Cast" and x.name == "to" and x.i == TensorProto.FLOAT:
                x.i = TensorProto.DOUBLE
        if n.op_type not in ("HardSigmoid", "HardSwish", "LeakyRelu"):
            nodes.append(n)
            continue
        k += 1
        nodes += _exact_f64(g, n, a, k)
    del g.node[:]
    g.node.extend(nodes)
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.DOUBLE
    del g.value_info[:]
    return m


def _exact_f64(g, n, a, k):
    """The nodes computing HardSigmoid, HardSwish or LeakyRelu node `n` (attributes `a`) in
    float64 from the decimals their float32 attributes were written from."""
    import numpy as np
    from onnx import helper, numpy_helper

    def c(v, name):
        g.initializer.append(numpy_helper.from_array(np.array(v, np.float64),
                                                     f"f64_{k}_{name}"))
        return f"f64_{k}_{name}"

    x, y = n.input[0], n.output[0]
    if n.op_type == "LeakyRelu":
        alpha = float(str(np.float32(a.get("alpha", 0.01))))
        return [helper.make_node("Mul", [x, c(alpha, "a")], [f"{y}_m"]),
                helper.make_node("Greater", [x, c(0.0, "z")], [f"{y}_g"]),
                helper.make_node("Where", [f"{y}_g", x, f"{y}_m"], [y])]
    if n.op_type == "HardSwish":  # its ONNX function body is HardSigmoid(alpha=float32)
        return [helper.make_node("Mul", [x, c(1 / 6, "a")], [f"{y}_m"]),
                helper.make_node("Add", [f"{y}_m", c(0.5, "b")], [f"{y}_s"]),
                helper.make_node("Clip", [f"{y}_s", c(0.0, "lo"), c(1.0, "hi")], [f"{y}_c"]),
                helper.make_node("Mul", [x, f"{y}_c"], [y])]
    alpha = 1 / 6 if np.float32(a.get("alpha", 0.2)) == np.float32(1 / 6) else \
        float(str(np.float32(a.get("alpha", 0.2))))
    beta = float(str(np.float32(a.get("beta", 0.5))))
    return [helper.make_node("Mul", [x, c(alpha, "a")], [f"{y}_m"]),
            helper.make_node("Add", [f"{y}_m", c(beta, "b")], [f"{y}_s"]),
            helper.make_node("Clip", [f"{y}_s", c(0.0, "lo"), c(1.0, "hi")], [y])]


def _ceil_as_pads(g):
    """MaxPool ceil_mode=1 as extra end pads (max-pool pads never win), so the reference
    evaluator, whose ceil_mode keeps a last window that starts in the padding (onnxruntime
    and torch drop it), computes torch's windows."""
    from onnx import helper

    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(g.value_info) + list(g.input)}
    for n in g.node:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if n.op_type != "MaxPool" or not a.get("ceil_mode"):
            continue
        size = shapes[n.input[0]][2:]
        k, st = a["kernel_shape"], a.get("strides", [1, 1])
        pads = list(a.get("pads", [0, 0, 0, 0]))
        for ax in (0, 1):
            lo, hi = pads[ax], pads[ax + 2]
            span = size[ax] + lo + hi - k[ax]
            out = -(-span // st[ax]) + 1
            if (out - 1) * st[ax] >= size[ax] + lo:
                out -= 1
            pads[ax + 2] = hi + (out - 1) * st[ax] - span  # floor now gives `out`
        for x in n.attribute:
            if x.name == "ceil_mode":
                x.i = 0
            if x.name == "pads":
                del x.ints[:]
                x.ints.extend(pads)


def reference_logits(path, x):
    """The file's outputs for float64 `x` by ONNX's own reference evaluator (onnx.reference:
    numpy, every op in float64, where onnxruntime has no float64 Conv)."""
    from onnx.reference import ReferenceEvaluator

    m = as_float64(path)
    return ReferenceEvaluator(m).run(None, {m.graph.input[0].name: x})[0]
