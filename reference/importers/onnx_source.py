"""Import an ONNX file (torch.onnx.export's, tf2onnx's, `skylark export --to onnx`'s) into a
skylark graph spec and its weights.

    imp = import_onnx("net.onnx")                  # Imported: spec, state, input_shape, ...
    list_unsupported("net.onnx")                   # ["op=Resize at node '/up/Resize'", ...]

Opset 13 and up, NCHW (an NHWC input read through a Transpose to NCHW, as tf2onnx writes a
Keras model, is imported as the NCHW graph behind it). Each ONNX op maps to a skylark kind
(reference.importers.onnx_ops); shape arithmetic (Shape, Gather, Concat, ... on constants) is
folded, and a few multi-node patterns become one node: Reshape-Transpose-Reshape channel shuffle,
MatMul + Add dense, Mul + Add per-channel rescaling, x * sigmoid(x) silu, global pool + flatten,
a zero Pad folded into the Conv after it. What cannot be expressed is listed, every item at once
(UnsupportedError); what cannot be read safely is an ImportFileError (reference.importers
.onnx_file).
"""

from __future__ import annotations

from pathlib import Path

from . import Imported, ImportFileError, UnsupportedError
from .onnx_file import load_model, topological
from .onnx_ops import Walk


def _input_shape(model, given, walk_nhwc: bool, path):
    """(C, H, W) of the one data input: the file's dims, or `given` where the file leaves them
    symbolic (ImportFileError when they disagree or neither says)."""
    inits = {t.name for t in model.graph.initializer}
    data = [v for v in model.graph.input if v.name not in inits]
    if len(data) != 1:
        raise ImportFileError(f"cannot import ONNX file {str(path)!r}: skylark models take one "
                              f"input. Received: inputs={[v.name for v in data]}")
    v = data[0]
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in v.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ImportFileError(f"cannot import ONNX file {str(path)!r}: the input must be a "
                              f"batch of images (N, C, H, W). Received: input {v.name!r} of "
                              f"rank {len(dims)}")
    chw = [dims[3], dims[1], dims[2]] if walk_nhwc else dims[1:]
    if given is not None:
        given = [int(d) for d in given]
        if len(given) != 3 or any(f is not None and f != g for f, g in zip(chw, given,
                                                                           strict=True)):
            raise ImportFileError(f"cannot import ONNX file {str(path)!r}: input_shape does "
                                  f"not match the file's input (C, H, W) {chw}. "
                                  f"Received: input_shape={tuple(given)}")
        chw = given
    if any(d is None or d <= 0 for d in chw):
        raise ImportFileError(f"cannot import ONNX file {str(path)!r}: the file leaves the "
                              f"input's (C, H, W) open: pass input_shape. Received: {chw}")
    return v.name, tuple(int(d) for d in chw)


def _walk(path, input_shape=None) -> tuple[Walk, tuple]:
    model, folder = load_model(path)
    nodes = topological(model.graph, path)
    walk = Walk(model, folder, path)
    name, shape = _input_shape(model, input_shape, walk.nhwc_input(nodes), path)
    dim0 = model.graph.input[[v.name for v in model.graph.input].index(name)] \
        .type.tensor_type.shape.dim[0]
    walk.batch = dim0.dim_value if dim0.HasField("dim_value") else -1
    walk.run(nodes, name, shape)
    return walk, shape


def import_onnx(path, *, input_shape=None) -> Imported:
    """The ONNX model at `path` as an Imported (source "onnx"); `input_shape` (C, H, W) where
    the file leaves the input's size open. UnsupportedError lists everything skylark cannot
    express; ImportFileError says why a file cannot be read (both one line)."""
    walk, shape = _walk(path, input_shape)
    if walk.unsupported:
        raise UnsupportedError(walk.unsupported, str(path))
    from ..spec import geometry

    try:
        geometry(walk.spec, shape)
    except ValueError as e:  # a mapped node the kinds refuse (e.g. a padding over half a window)
        raise UnsupportedError([f"pattern: {str(e).splitlines()[0]}"], str(path)) from None
    return Imported(walk.spec, walk.state, shape, "onnx", walk.origin, walk.notes)


def list_unsupported(path, *, input_shape=None) -> list[str]:
    """Every op, attribute and pattern of the file skylark cannot express ([] if none)."""
    return _walk(Path(path), input_shape)[0].unsupported


__all__ = ["import_onnx", "list_unsupported"]
