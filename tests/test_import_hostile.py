"""Hostile and malformed ONNX files: each refused in one line (ImportFileError or
UnsupportedError, both ValueErrors), in bounded time and memory, and with exit 2 from the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from reference.importers import ImportFileError, UnsupportedError
from reference.importers.onnx_source import import_onnx, list_unsupported

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

pytestmark = pytest.mark.onnxruntime

# every refusal here reads at most a few KB: 20 MB of Python allocations and 5 s are far above
# what a refusal costs and far below what allocating a 2 GB claim would
MAX_BYTES, MAX_SECONDS = 20 * 2**20, 5.0


def _model(nodes, inits=(), opset=17, inputs=None, outputs=None, value_info=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "g", inputs or [x], outputs or [y], list(inits),
                          value_info=list(value_info))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _conv_model(w=None):
    if w is None:
        w = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "c.weight")
    return _model([helper.make_node("Conv", ["x", "c.weight"], ["y"], name="c")], [w])


def _refused(path, error=ImportFileError):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(error) as e:
            import_onnx(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t < MAX_SECONDS
    assert peak < MAX_BYTES, peak
    msg = str(e.value)
    assert "\n" not in msg and "Received" in msg, msg
    return msg


def test_a_good_file_imports(tmp_path):
    """The control: the same builder's well-formed file imports (so the refusals below are
    about what each one breaks)."""
    onnx.save(_conv_model(), tmp_path / "ok.onnx")
    imp = import_onnx(tmp_path / "ok.onnx")
    assert [s["kind"] for s in imp.spec] == ["conv2d"] and imp.input_shape == (2, 4, 4)


def test_empty_file(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    assert "empty" in _refused(tmp_path / "e.onnx")


def test_not_onnx(tmp_path):
    (tmp_path / "n.onnx").write_bytes(b"PK\x03\x04 this is a zip, not a model" * 50)
    assert "not an ONNX model" in _refused(tmp_path / "n.onnx")


def test_missing_file(tmp_path):
    _refused(tmp_path / "absent.onnx")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated(tmp_path, keep):
    data = _conv_model().SerializeToString()
    (tmp_path / "t.onnx").write_bytes(data[: int(len(data) * keep)])
    _refused(tmp_path / "t.onnx", (ImportFileError, UnsupportedError))


def test_cycle(tmp_path):
    nodes = [helper.make_node("Relu", ["x", "b"], ["a"], name="r1"),
             helper.make_node("Relu", ["a"], ["b"], name="r2"),
             helper.make_node("Relu", ["b"], ["y"], name="r3")]
    m = _model(nodes)
    (tmp_path / "c.onnx").write_bytes(m.SerializeToString())  # onnx.save would check it
    assert "cycle" in _refused(tmp_path / "c.onnx")


def test_opset_below_13(tmp_path):
    m = _conv_model()
    m.opset_import[0].version = 11
    onnx.save(m, tmp_path / "o.onnx")
    assert "opset=11" in _refused(tmp_path / "o.onnx")


def test_huge_shape_claim_without_data(tmp_path):
    """An initializer claiming 2**31 floats (8 GB) with no data: refused, never allocated."""
    w = TensorProto(name="c.weight", data_type=TensorProto.FLOAT, dims=[2**31, 2, 1, 1])
    (tmp_path / "h.onnx").write_bytes(_conv_model(w).SerializeToString())
    assert "2147483648" in _refused(tmp_path / "h.onnx")


def test_huge_constant_of_shape_is_not_allocated(tmp_path):
    """Constant folding checks a ConstantOfShape's size before making it (2**40 floats)."""
    shape = numpy_helper.from_array(np.array([2**20, 2**20], np.int64), "s")
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["z"], name="big"),
             helper.make_node("Add", ["x", "z"], ["y"], name="add")]
    onnx.save(_model(nodes, [shape]), tmp_path / "k.onnx")
    assert "ConstantOfShape" in _refused(tmp_path / "k.onnx", UnsupportedError)


def test_huge_value_info_is_not_allocated(tmp_path):
    """value_info is a claim the importer never allocates from: the model imports."""
    vi = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2**31, 2**31, 2**31, 2**31])
    m = _conv_model()
    m.graph.value_info.append(vi)
    (tmp_path / "v.onnx").write_bytes(m.SerializeToString())
    tracemalloc.start()
    imp = import_onnx(tmp_path / "v.onnx")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < MAX_BYTES and imp.spec[0]["out_channels"] == 3


def _external(tmp_path, location, write=True):
    w = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "c.weight")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(24))):
        e = w.external_data.add()
        e.key, e.value = k, v
    if write:
        (tmp_path / "w.bin").write_bytes(np.ones(6, np.float32).tobytes())
    (tmp_path / "m.onnx").write_bytes(_conv_model(w).SerializeToString())
    return tmp_path / "m.onnx"


def test_external_data_read_from_the_folder(tmp_path):
    imp = import_onnx(_external(tmp_path, "w.bin"))
    assert np.array_equal(imp.state["c.weight"], np.ones((3, 2, 1, 1), np.float32))


def test_external_data_missing(tmp_path):
    assert "missing" in _refused(_external(tmp_path, "w.bin", write=False))


@pytest.mark.parametrize("location", ["../w.bin", "/etc/passwd", "sub/../../w.bin"])
def test_external_data_escaping_the_folder(tmp_path, location):
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "w.bin").write_bytes(np.ones(6, np.float32).tobytes())
    assert "inside the model's folder" in _refused(_external(inner, location, write=False))


def test_external_data_too_short(tmp_path):
    path = _external(tmp_path, "w.bin")
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    _refused(path)


def test_unsupported_ops_all_listed(tmp_path):
    nodes = [helper.make_node("Elu", ["x"], ["a"], name="/act/Elu"),
             helper.make_node("Resize", ["a", "", "s"], ["b"], name="/up/Resize"),
             helper.make_node("Relu", ["b"], ["y"], name="r")]
    s = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    onnx.save(_model(nodes, [s]), tmp_path / "u.onnx")
    items = list_unsupported(tmp_path / "u.onnx")
    assert items == ["op=Elu at node '/act/Elu'"]  # Resize reads Elu's output: not reported twice
    msg = _refused(tmp_path / "u.onnx", UnsupportedError)
    assert "op=Elu at node '/act/Elu'" in msg
    nodes[1] = helper.make_node("Resize", ["x", "", "s"], ["b"], name="/up/Resize")
    nodes[2] = helper.make_node("Add", ["a", "b"], ["y"], name="add")
    onnx.save(_model(nodes, [s]), tmp_path / "u2.onnx")
    assert list_unsupported(tmp_path / "u2.onnx") == ["op=Elu at node '/act/Elu'",
                                                      "op=Resize at node '/up/Resize'"]


@pytest.mark.slow
def test_cli_exit_2_one_line(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    data = _conv_model().SerializeToString()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    for name in ("e.onnx", "t.onnx"):
        r = subprocess.run([sys.executable, "-m", "skylark", "import", str(tmp_path / name),
                            "--out", str(tmp_path / "o.npz")], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "o.npz").exists()
