"""ONNX Runtime as a forward-only implementation: its forward tensors are compared, its gradients
are reported as not computed (never passed, failed or missing), and the graph it runs in float64
avoids the kernels its CPU provider lacks. (Its forward equivalence for every layer kind runs in
each layer family's file, through FRAMEWORK_PARAMS.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs

import skylark as sk
from reference.commands.check import format_report
from reference.frameworks import FRAMEWORKS
from reference.harness import FORWARD_ONLY, Case, compare_tensors, run_check
from reference.spec import describe
from skylark.cli import main
from skylark.models import build_model

pytestmark = pytest.mark.onnxruntime


@pytest.fixture(autouse=True)
def _installed():
    needs("onnxruntime")


def _case(dtype="float32") -> Case:
    return Case.from_model(sk.skylark_cnn((1, 8, 8), dtype=dtype), input_shape=(1, 8, 8),
                           dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_check_reports_gradients_as_not_computed(dtype, reference_runner):
    report = run_check(["onnxruntime"], dtype, "ties", runners={
        "onnxruntime": reference_runner("onnxruntime")}, log=lambda m: None,
        model=build_model("vgg-bn", (1, 28, 28), dtype=dtype), input_shape=(1, 28, 28))
    r = report["frameworks"]["onnxruntime"]
    assert report["ok"] and r["status"] == "ok" and r["forward_only"]
    forward = [row for row in r["rows"] if "/" not in row["tensor"]]
    grads = [row for row in r["rows"] if "/" in row["tensor"]]
    assert {"out.0", "loss", "stat.1.running_var"} <= {row["tensor"] for row in forward}
    assert all(row["ok"] is True for row in forward)
    assert grads and all(row["ok"] is None and row["note"] == FORWARD_ONLY for row in grads)
    assert r["first_backward"] == {"loss": None, "cot": None}
    text = format_report(report)
    assert "missing" not in text and "FAIL" not in text
    assert "gradients not computed (forward-only runtime)" in text


def test_a_forward_only_runtime_still_fails_on_a_wrong_forward_tensor():
    case = _case()
    got = {k: v for k, v in case.ref.items() if "/" not in k}
    got["out.1"] = got["out.1"] * (1 + 1e-3)
    r = compare_tensors("onnxruntime", case.ref, got, case.budget, case.order, gradients=False)
    assert r["status"] == "FAIL" and r["first_forward"] == "out.1"
    del got["loss"]
    r = compare_tensors("onnxruntime", case.ref, got, case.budget, case.order, gradients=False)
    assert {row["tensor"]: row["note"] for row in r["rows"]}["loss"] == "missing"


def test_a_runner_with_gradients_that_returns_none_fails_as_missing():
    """The flag, not the absence of gradients, makes them "not computed"."""
    case = _case()
    got = {k: v for k, v in case.ref.items() if "/" not in k}
    r = case.compare("torch", got)
    assert r["status"] == "FAIL" and r["first_backward"]["loss"] == "loss/d.out.3"
    assert not any(row["note"] == FORWARD_ONLY for row in r["rows"])


def test_the_capability_flag_matches_the_framework_table(reference_runner):
    for name, fw in FRAMEWORKS.items():
        if fw.in_process and name != "numpy":
            try:
                runner = reference_runner(name)
            except pytest.skip.Exception:
                continue
            assert runner.supports_gradients is not fw.forward_only, name
    with pytest.raises(NotImplementedError, match="forward-only"):
        runner = reference_runner("onnxruntime")
        runner.setup(*_case().setup_args())
        runner.train_setup(0.1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cli_check_passes_and_says_forward_only(dtype, capsys):
    assert main(["check", "--frameworks", "onnxruntime", "--dtype", dtype, "--quiet"]) == 0
    assert "passed: every tensor within budget (onnxruntime: forward tensors only)" in \
        capsys.readouterr().out


def _ops(model) -> set[str]:
    return {n.op_type for n in model.graph.node}


def test_float64_graph_avoids_the_kernels_onnxruntime_lacks():
    """float32 uses the standard ops; float64 the ones onnxruntime 1.31's CPU provider has
    (Conv, AveragePool, GlobalAveragePool: NOT_IMPLEMENTED in float64), and LeakyRelu's float32
    `alpha` attribute is replaced by a float64 constant."""
    from reference.runners.onnx_graph import build_onnx_model

    layers = [sk.Conv2D(1, 4, 3, padding=1), sk.LeakyReLU(0.1), sk.AvgPool2D(2),
              sk.BatchNorm2d(4), sk.GlobalAvgPool2D(), sk.Dense(4, 3)]
    spec = describe(sk.Sequential(*layers))
    state = sk.Sequential(*layers).state()
    f32 = _ops(build_onnx_model(spec, state, "float32", (1, 8, 8)))
    f64 = _ops(build_onnx_model(spec, state, "float64", (1, 8, 8)))
    assert {"Conv", "LeakyRelu", "AveragePool", "BatchNormalization",
            "GlobalAveragePool"} <= f32
    assert not f64 & {"Conv", "LeakyRelu", "AveragePool", "BatchNormalization",
                      "GlobalAveragePool"}


def test_onnxruntime_still_lacks_a_float64_conv():
    """Why the float64 graph spells Conv out: if this starts failing, onnxruntime gained the
    kernel and the standard op can be used in float64 too."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from reference.runners.onnx_ref import inference_session

    w = numpy_helper.from_array(np.ones((1, 1, 3, 3)), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 1, 3, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        inference_session(model)
