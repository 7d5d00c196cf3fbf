"""An ONNX graph from a spec: each layer kind's `onnx` builder adds its nodes (reference.kinds).

    model = build_onnx_model(spec, state, "float32", (1, 28, 28))   # onnx.ModelProto, logits
    model = build_onnx_model(spec, state, "float64", (1, 8, 8), outputs="trace", training=True,
                             loss={"label_smoothing": 0.0, "reduction": "mean"})

ONNX is NCHW with OIHW conv weights and Gemm(transB=1) dense weights, so the initializers are
skylark's state under skylark's names ("0.weight", "2.running_mean"; reference.transfer.to_onnx)
and Flatten keeps the C, H, W order: no layout conversion at all.

Opset 17 and IR version 8 (onnxruntime 1.31 refuses the IR version onnx 1.23 writes by
default). The graph's input "x" is (N, C, H, W) with a symbolic batch "N"; with
outputs="logits" (the export) the one output is "logits" (N, K). outputs="trace" (the check)
adds every layer output "out.{i}", "loss" (with the "labels" input) and, in training, the
updated running statistics "stat.{i}.{buffer}"; each dropout layer then reads its keep-mask
from an input "mask.{i}".

float64: onnxruntime's CPU provider has no float64 kernel for Conv, AveragePool or
GlobalAveragePool (measured on 1.31: NOT_IMPLEMENTED), so in float64 those kinds are built from
ops it has (Pad, Slice, Einsum, ReduceMean); `OnnxGraph.portable` says which path to take.
"""

from __future__ import annotations

import numpy as np

from ..kinds import KINDS
from ..spec import geometry, run_graph

OPSET = 17
IR_VERSION = 8


class OnnxGraph:
    """The graph under construction: nodes, initializers, inputs and outputs, and the pass's
    mode. A builder calls `node`, `const` and `param` and returns its output's name."""

    def __init__(self, dtype: str, training: bool = False) -> None:
        from onnx import TensorProto

        self.dtype, self.training = np.dtype(dtype).name, training
        self.elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[self.dtype]
        self.portable = self.dtype == "float64"  # see the module docstring
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.params: dict[str, np.ndarray] = {}
        self._n = 0

    def node(self, op: str, inputs, n_out: int = 1, **attrs):
        """Add one node; returns its output name (or names, with n_out > 1)."""
        from onnx import helper

        self._n += 1
        outs = [f"{op.lower()}_{self._n}" + (f"_{k}" if n_out > 1 else "") for k in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=f"{op}_{self._n}",
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=None) -> str:
        """A constant initializer (in the graph's float dtype unless `dtype` is given)."""
        from onnx import numpy_helper

        self._n += 1
        name = f"const_{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype or self.dtype), name))
        return name

    def ints(self, *values) -> str:
        """An int64 vector constant (shapes, axes, pads, slice bounds)."""
        return self.const(np.array(values, np.int64), np.int64)

    def param(self, name: str) -> str:
        """Layer state `name` ("0.weight") as an initializer of the same name."""
        if name not in self.params:
            raise KeyError(f"no state entry {name!r} for the ONNX graph")
        return name

    def add_input(self, name: str, elem, shape) -> str:
        from onnx import helper

        self.inputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def add_output(self, name: str, value: str, shape) -> None:
        """Expose `value` (of `shape`, "N" the batch) as graph output `name` (an Identity when
        the names differ)."""
        from onnx import helper

        if value != name:
            self.nodes.append(helper.make_node("Identity", [value], [name], name=f"out_{name}"))
        self.outputs.append(helper.make_tensor_value_info(name, self.elem, list(shape)))


def loss_nodes(b: OnnxGraph, logits: str, k: int, loss: dict) -> str:
    """softmax cross-entropy of `logits` (N, K) against the int64 input "labels" (N,), with
    torch's label smoothing: (1 - eps) * nll + eps * mean_k(-log p_k); mean or sum."""
    from onnx import TensorProto

    labels = b.add_input("labels", TensorProto.INT64, ["N"])
    logp = b.node("LogSoftmax", [logits], axis=1)
    idx = b.node("Unsqueeze", [labels, b.ints(1)])
    ce = b.node("Neg", [b.node("GatherElements", [logp, idx], axis=1)])  # (N, 1)
    eps = float(loss.get("label_smoothing", 0.0))
    if eps:
        smooth = b.node("Neg", [b.node("ReduceMean", [logp], axes=[1], keepdims=1)])
        ce = b.node("Add", [b.node("Mul", [ce, b.const(1 - eps)]),
                            b.node("Mul", [smooth, b.const(eps)])])
    reduce = "ReduceSum" if loss.get("reduction") == "sum" else "ReduceMean"
    if reduce == "ReduceSum":  # opset 13+: ReduceSum takes its axes as an input
        return b.node(reduce, [ce, b.ints(0, 1)], keepdims=0)
    return b.node(reduce, [ce], axes=[0, 1], keepdims=0)


def build_onnx_model(spec: list[dict], state: dict, dtype: str, input_shape, *,
                     outputs: str = "logits", training: bool = False, loss: dict | None = None):
    """The onnx.ModelProto of `spec` with `state` (skylark layout and names: the checked
    initializers) for (C, H, W) inputs; `outputs`, `training`, `loss`: the module docstring."""
    from onnx import TensorProto, helper, numpy_helper

    from ..transfer import to_onnx

    if outputs not in ("logits", "trace"):
        raise ValueError(f"outputs is 'logits' or 'trace'. Received: outputs={outputs!r}")
    b = OnnxGraph(dtype, training and outputs == "trace")
    b.params = {k: np.asarray(v, b.dtype) for k, v in to_onnx(state, spec).items()}
    b.inits += [numpy_helper.from_array(v, k) for k, v in b.params.items()]
    x = b.add_input("x", b.elem, ["N", *input_shape])
    geo = geometry(spec, input_shape)

    def node(s, g, h):
        if b.training and KINDS[s["kind"]].uses_mask:
            b.add_input(f"mask.{g.index}", TensorProto.BOOL,
                        list(KINDS[s["kind"]].mask_shape(s, "N", g.in_shape)))
        out = KINDS[s["kind"]].onnx(s, g, b, h)
        if outputs == "trace":
            b.add_output(f"out.{g.index}", out, ["N", *g.out_shape])
        return out

    h = run_graph(spec, geo, x, node)[-1]
    if outputs == "logits":
        b.add_output("logits", h, ["N", *geo[-1].out_shape])
    else:
        b.add_output("loss", loss_nodes(b, h, geo[-1].out_shape[0], loss or {}), [])
    graph = helper.make_graph(b.nodes, "skylark", b.inputs, b.outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="skylark")
    return model


__all__ = ["IR_VERSION", "OPSET", "OnnxGraph", "build_onnx_model", "loss_nodes"]
