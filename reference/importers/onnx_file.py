"""Reading an ONNX file without trusting it: the model, its constants and its node order.

    model, folder = load_model("net.onnx")            # ImportFileError, one line, when unsafe
    arr = tensor_array(model.graph.initializer[0], folder, "net.onnx")
    nodes = topological(model.graph, "net.onnx")      # every node after what it reads

Nothing here allocates from a claim the file makes: a tensor's size is checked against the bytes
the file (or its external data file) actually holds before an array is made, so a 2 GB shape
with no data costs nothing. External data is read only from files inside the model's folder
(no absolute path, no "..": a file cannot make the importer read /etc/passwd). The graph is
sorted by hand (Kahn's algorithm), so a cycle is an error, not a hang.
"""

from __future__ import annotations

import heapq
import math
from pathlib import Path

import numpy as np

from . import ImportFileError

MIN_OPSET = 13
# dtypes a constant may have (ONNX TensorProto data_type -> numpy); others are refused
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_,
           10: np.float16, 11: np.float64}
_FIELDS = {1: "float_data", 11: "double_data", 6: "int32_data", 7: "int64_data",
           2: "int32_data", 3: "int32_data", 9: "int32_data", 10: "int32_data"}


def _fail(path, why: str) -> ImportFileError:
    return ImportFileError(f"cannot import ONNX file {str(path)!r}: {why}")


def load_model(path):
    """(onnx.ModelProto without external data, the model's folder); ImportFileError for a
    missing, empty or unparsable file, a graph-less model or an opset below MIN_OPSET."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ImportFileError(f"no ONNX file at this path. Received: {str(p)!r}")
    size = p.stat().st_size
    if size == 0:
        raise _fail(p, "the file is empty. Received: 0 bytes")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError, or anything a hostile file provokes
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _fail(p, f"not an ONNX model (protobuf cannot parse it: {first}). "
                       f"Received: {size} bytes") from None
    if not model.HasField("graph") or not model.graph.node:
        raise _fail(p, f"not an ONNX model (no graph nodes). Received: {size} bytes")
    opset = default_opset(model)
    if opset is None or opset < MIN_OPSET:
        raise _fail(p, f"skylark reads opset {MIN_OPSET} and up (re-export with "
                       f"opset_version>={MIN_OPSET}). Received: opset={opset}")
    return model, p.resolve().parent


def default_opset(model) -> int | None:
    """The version of the default ("" / "ai.onnx") domain the model imports."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def tensor_array(t, folder: Path, path) -> np.ndarray:
    """A TensorProto's values, after checking that the data it claims is there."""
    what = f"tensor {t.name!r}"
    if any(d < 0 for d in t.dims):
        raise _fail(path, f"{what} has a negative dimension. Received: dims={list(t.dims)}")
    n = math.prod(int(d) for d in t.dims)
    if t.data_type not in _DTYPES:
        raise _fail(path, f"{what} has a data type skylark does not read. "
                          f"Received: data_type={t.data_type}")
    dtype = np.dtype(_DTYPES[t.data_type])
    if t.data_location == 1:  # TensorProto.EXTERNAL
        raw = _external_bytes(t, n * dtype.itemsize, folder, path)
        return np.frombuffer(raw, dtype).reshape(tuple(t.dims)).copy()
    if t.HasField("raw_data"):
        if len(t.raw_data) != n * dtype.itemsize:
            raise _fail(path, f"{what} claims shape {list(t.dims)} ({n} values) but holds "
                              f"{len(t.raw_data)} bytes. Received: dims={list(t.dims)}")
        return np.frombuffer(t.raw_data, dtype).reshape(tuple(t.dims)).copy()
    held = len(getattr(t, _FIELDS[t.data_type], [])) if t.data_type in _FIELDS else 0
    if held != n:
        raise _fail(path, f"{what} claims shape {list(t.dims)} ({n} values) but holds {held}. "
                          f"Received: dims={list(t.dims)}")
    from onnx import numpy_helper

    return np.array(numpy_helper.to_array(t))


def _external_bytes(t, nbytes: int, folder: Path, path) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    where = f"tensor {t.name!r}'s external data"
    rel = Path(loc)
    if not loc or rel.is_absolute() or ".." in rel.parts:
        raise _fail(path, f"{where} must be a file inside the model's folder. "
                          f"Received: location={loc!r}")
    target = (folder / rel).resolve()
    if folder not in target.parents:  # a symlink out of the folder
        raise _fail(path, f"{where} resolves outside the model's folder. "
                          f"Received: location={loc!r}")
    if not target.is_file():
        raise _fail(path, f"{where} file is missing. Received: location={loc!r}")
    size = target.stat().st_size
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", size - offset))
    except ValueError:
        raise _fail(path, f"{where} has a non-integer offset or length. "
                          f"Received: {info}") from None
    if offset < 0 or length != nbytes or offset + length > size:
        raise _fail(path, f"{where} does not hold the {nbytes} bytes its shape "
                          f"{list(t.dims)} needs. Received: offset={offset}, "
                          f"length={length}, file size={size}")
    with open(target, "rb") as f:
        f.seek(offset)
        return f.read(length)


def topological(graph, path) -> list:
    """The graph's nodes, each after the nodes whose outputs it reads; ImportFileError for a
    cycle, a value two nodes write, or an input nothing defines."""
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    writer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for o in node.output:
            if o in writer or o in known - {""}:
                raise _fail(path, f"value {o!r} is written twice (node {node.name!r}). "
                                  f"Received: output={o!r}")
            if o:
                writer[o] = i
    waiting = []
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        deps = set()
        for v in node.input:
            if v in writer:
                deps.add(writer[v])
            elif v not in known:
                raise _fail(path, f"node {node.name!r} ({node.op_type}) reads a value nothing "
                                  f"defines. Received: input={v!r}")
        waiting.append(len(deps))
        for d in deps:
            readers.setdefault(d, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:  # the file's own order wherever it is a valid one (the lowest index first)
        i = heapq.heappop(ready)
        order.append(graph.node[i])
        for r in readers.get(i, []):
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(graph.node):
        stuck = next(n for i, n in enumerate(graph.node) if waiting[i] > 0)
        raise _fail(path, f"the graph has a cycle (node {stuck.name!r}, {stuck.op_type}, "
                          f"waits on itself). Received: {len(graph.node) - len(order)} "
                          f"nodes in cycles")
    for o in graph.output:
        if o.name not in writer and o.name not in known:
            raise _fail(path, f"graph output {o.name!r} is written by no node. "
                              f"Received: output={o.name!r}")
    return order
