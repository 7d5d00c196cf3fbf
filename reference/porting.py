"""Porting weights: a skylark model or checkpoint to a torch, Keras, TensorFlow or ONNX file, and
back, every export proven on the spot.

    from reference.porting import export_weights, load_from
    report = export_weights("ckpt.npz", "onnx", "net.onnx")          # written, then verified
    report = export_weights(model, "torch", "net.pt", input_shape=(1, 28, 28))
    model = load_from("net.pt", "torch", "skylark", input_shape=(1, 28, 28))   # a Sequential

The files (reference.formats): a torch state_dict (`torch.save`), Keras weights (.weights.h5) of
the Keras reference's model, a TensorFlow SavedModel (raw-TF forward, `serving_default`: NHWC
"x" -> "logits"), an ONNX model (NCHW "x" -> "logits"). Every layout conversion is
reference.transfer's, and they are permutations: numpy -> file -> numpy is bit-exact.

Verification (`verify=True`): the written file is loaded in its own framework, runs a random and
a tie-heavy batch in evaluation mode, and its logits are compared with numpy's within the bar
`skylark check` uses for the logits (reference.budgets: float64 1e-10 relative, float32 the
derived budget). The file is written to a temporary name beside `path` and moved into place
only once written (and verified), so a failure never leaves a half-written file or replaces a
good one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

import skylark as sk
from skylark.model import _META_KEY
from skylark.models import build_model, from_config

from .exporters.torch_program import is_program
from .formats import FORMATS, Portable
from .harness import Case, compare_tensors
from .inputs import make_batch
from .runners.runner import quiet_native_logs
from .spec import describe, geometry, node_names, shapes

TARGETS = tuple(FORMATS)  # torch, keras, tf, onnx
DEFAULT_INPUT_SHAPE = (1, 28, 28)


class VerificationError(RuntimeError):
    """An exported file whose outputs are not within the bar (nothing was written)."""


def check_format(name: str, what: str = "to") -> None:
    """ValueError naming `what` (an argument, or a command-line flag such as "--to")."""
    if name not in FORMATS:
        raise ValueError(f"{what} must be one of {', '.join(TARGETS)}. Received: {what}={name!r}")


def _framework_scope(fmt: str):
    """TensorFlow's native start-up lines are dropped while Keras or TF is first imported."""
    return quiet_native_logs() if fmt in ("keras", "tf") else contextlib.nullcontext()


def portable(model: sk.Graph, input_shape=DEFAULT_INPUT_SHAPE) -> Portable:
    """What a file is written from: `model`'s spec, state and dtype, for (C, H, W) inputs."""
    spec = describe(model)
    input_shape = tuple(int(d) for d in input_shape)
    geometry(spec, input_shape)  # ValueError when the model does not fit the input shape
    state = {k: np.array(v) for k, v in model.state().items()}
    dtype = next(iter(state.values())).dtype.name if state else "float32"
    return Portable(spec, state, dtype, input_shape)


# --- checkpoints ------------------------------------------------------------------------------


def _peek(path: Path) -> tuple[dict, dict]:
    """(metadata, arrays) of a skylark .npz checkpoint, without a model."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at this path. Received: {str(path)!r}")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {str(path)!r} (corrupt or not an .npz): "
                         f"{e}") from None
    meta = arrays.pop(_META_KEY, None)
    return (json.loads(str(meta)) if meta is not None else {}), arrays


def _input_shape(given, meta: dict) -> tuple[int, int, int]:
    """--input-shape, else the checkpoint's, else its dataset's (digits: 1x8x8), else 1x28x28."""
    if given is not None:
        return tuple(int(d) for d in given)
    if meta.get("input_shape"):
        return tuple(int(d) for d in meta["input_shape"])
    return (1, 8, 8) if meta.get("dataset") == "digits" else DEFAULT_INPUT_SHAPE


def read_checkpoint(path, model: str | None = None, input_shape=None) -> tuple[Portable, dict]:
    """(Portable, metadata) of a skylark checkpoint. The architecture is the checkpoint's own
    (metadata "model", skylark.models.to_config) when it has one, else `model` (a built-in name,
    a .json file or module:function; default "skylark"). ValueError / FileNotFoundError name
    what does not fit."""
    path = Path(path)
    meta, arrays = _peek(path)
    floats = [v.dtype.name for k, v in arrays.items() if np.issubdtype(v.dtype, np.floating)]
    dtype = floats[0] if floats else "float32"
    shape = _input_shape(input_shape, meta)
    if meta.get("model"):
        net = from_config(meta["model"], dtype=dtype)
    else:
        heads = sorted((int(k.split(".")[0]), k) for k in arrays if k[:1].isdigit())
        classes = int(arrays[heads[-1][1]].shape[0]) if heads else 10
        net = build_model(model or "skylark", shape, num_classes=classes, dtype=dtype)
    net.load(path)  # every name and shape checked, all or nothing
    return portable(net, shape), meta


# --- the output path --------------------------------------------------------------------------


def check_out(path, fmt: str, force: bool = False, suffix: str | None = None) -> Path:
    """ValueError (FileExistsError) naming `path` when it cannot be written: an existing file
    or folder without `force`, a missing or unwritable folder, or the wrong suffix."""
    path = Path(path)
    if fmt == "keras" and not str(path).endswith((".weights.h5", ".keras")):
        # Keras' save_weights refuses any other name; .keras is a full model
        raise ValueError(f"the file must end in .weights.h5 (weights) or .keras (a full "
                         f"model). Received: {str(path)!r}")
    if suffix and not str(path).endswith(suffix):
        raise ValueError(f"the file must end in {suffix}. Received: {str(path)!r}")
    if path.exists() and not force:
        raise FileExistsError(f"{str(path)!r} exists: pass --force (force=True) to replace it")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ValueError(f"the folder {str(folder)!r} does not exist. Received: {str(path)!r}")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"the folder {str(folder)!r} is not writable. Received: {str(path)!r}")
    return path


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path`; an existing `path` (force) is moved aside first and removed only
    once the new one is in place."""
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    had = path.exists() or path.is_symlink()
    if had:
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        if had:
            os.rename(old, path)
        raise
    if had:
        _remove(old)


# --- verification ---------------------------------------------------------------------------


def verify_file(path, fmt: str, p: Portable, batch: int = 4, seed: int = 0,
                program: bool = False) -> dict:
    """Load `path` in its framework, run a random and a ties batch (evaluation mode), compare
    its logits with numpy's within the check's bar. {"ok", "rows": [{input, max_abs, budget,
    ok}], "seconds", "loader"}. `program`: a torch .pt2 (reference.exporters.torch_program),
    loaded with torch.export.load."""
    check_format(fmt)
    run = _program_io()[1] if program else FORMATS[fmt][2]
    last, k = f"out.{node_names(p.spec)[-1]}", shapes(p.spec, p.input_shape)[-1][0]
    rows, t0 = [], time.perf_counter()
    kinds = ("random", "ties")
    batches = [make_batch(kind, batch, p.input_shape, k, seed, p.dtype) for kind in kinds]
    # one run of the file on both batches stacked (evaluation mode: no sample sees another),
    # so a format that starts a process (a .keras model) starts it once
    with _framework_scope(fmt):
        both = run(path, p, np.concatenate([b[0] for b in batches]))
    for i, (kind, (x, labels, cot)) in enumerate(zip(kinds, batches, strict=True)):
        case = Case(p.spec, p.state, p.dtype, p.input_shape, x, labels, cot, training=False)
        got = both[i * len(x):(i + 1) * len(x)]
        row = compare_tensors(fmt, case.ref, {last: got}, case.budget,
                              {"forward": [last], "loss": [], "cot": []})
        rows.append({"input": kind, **row["rows"][0]})
    return {"ok": all(r["ok"] for r in rows), "rows": rows,
            "seconds": time.perf_counter() - t0, "loader": _loader(fmt, path, program)}


def _loader(fmt: str, path, program: bool) -> str:
    """What loaded the file, for verify_line."""
    if program:
        return "torch.export"
    if fmt == "keras" and str(path).endswith(".keras"):
        return "a fresh Keras process with no skylark"  # reference.keras_export
    return fmt


def verify_line(fmt: str, v: dict) -> str:
    """One line saying what the verification found."""
    worst = max(v["rows"], key=lambda r: (r["max_abs"] is None, r["max_abs"] or 0))
    errs = ", ".join(f"{r['input']} {r['max_abs']:.2e} <= {r['budget']:.2e}" if r["ok"] else
                     f"{r['input']} {r['max_abs']} > {r['budget']:.2e} {r['note']}".rstrip()
                     for r in v["rows"])
    verdict = "verified" if v["ok"] else "verification FAILED"
    fmt = v.get("loader", fmt)
    fmt = "onnxruntime" if fmt == "onnx" else fmt  # what loads an ONNX file
    return (f"{verdict}: loaded in {fmt}, logits of a random and a ties batch against numpy "
            f"(max|a-b| vs the check's bar: {errs}; worst {worst['input']}) "
            f"in {v['seconds']:.1f} s")


# --- the API ----------------------------------------------------------------------------------


def export_weights(model_or_ckpt, to: str, path, *, verify: bool = True, force: bool = False,
                   model: str | None = None, input_shape=None) -> dict:
    """Write a skylark model (a Graph, with `input_shape`, default 1x28x28) or checkpoint
    (a .npz path; `model` and `input_shape` as read_checkpoint's) as a `to` file at `path`.

    `to="torch"` with a path ending in .pt2 writes the whole program (architecture and weights,
    torch.export: reference.exporters.torch_program), any other path the state_dict.

    Returns {"path", "format", "portable", "verification" (verify_file's, or None),
    "program"}; raises VerificationError (nothing written) when the file's outputs are not
    within the bar."""
    check_format(to)
    program = to == "torch" and is_program(path)
    write = _program_io()[0] if program else FORMATS[to][0]
    if isinstance(model_or_ckpt, sk.Graph):
        p = portable(model_or_ckpt, input_shape or DEFAULT_INPUT_SHAPE)
    else:
        p = read_checkpoint(model_or_ckpt, model, input_shape)[0]
    path = check_out(path, to, force)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        try:
            with _framework_scope(to):
                write(p, tmp)
        except (OSError, RuntimeError) as e:  # e.g. torch's "open file failed"
            raise OSError(f"cannot write {str(path)!r}: {str(e).splitlines()[0]}") from None
        v = verify_file(tmp, to, p, program=program) if verify else None
        if v is not None and not v["ok"]:
            raise VerificationError(f"{to} export of {str(path)!r} not written: "
                                    + verify_line(to, v))
        _move_into_place(tmp, path)
    finally:
        _remove(tmp)
    return {"path": path, "format": to, "portable": p, "verification": v, "program": program}


def _program_io():
    """(write, run) of a torch .pt2 program."""
    from .exporters.torch_program import run_program, write_program

    return write_program, run_program


def _architecture(model, input_shape, dtype: str) -> sk.Graph:
    """A model (Graph or Sequential), a config list (skylark.models.to_config), or a
    build_model name."""
    if isinstance(model, sk.Graph):
        return from_config([dict(s) for s in describe(model)], dtype=dtype)
    if isinstance(model, list):
        return from_config(model, dtype=dtype)
    return build_model(model, input_shape, dtype=dtype)


def read_weights(path, framework: str, model, input_shape=DEFAULT_INPUT_SHAPE,
                 dtype: str | None = None) -> Portable:
    """The state a `framework` file at `path` holds for `model`'s architecture, in skylark's
    layout and names, checked (ValueError naming missing, unexpected and mis-shaped entries).
    `dtype` None: the file's own (Keras: float32, the dtype its model is built in)."""
    check_format(framework, "framework")
    if not Path(path).exists():
        raise FileNotFoundError(f"no {framework} file at this path. Received: {str(path)!r}")
    shape = tuple(int(d) for d in input_shape)
    net = _architecture(model, shape, dtype or "float32")
    p = portable(net, shape)
    with _framework_scope(framework):
        state = FORMATS[framework][1](path, p)
    dtype = dtype or next(iter(state.values())).dtype.name
    return p._replace(state={k: np.asarray(v, dtype) for k, v in state.items()}, dtype=dtype)


def load_from(path, framework: str, model, *, input_shape=DEFAULT_INPUT_SHAPE,
              dtype: str | None = None) -> sk.Graph:
    """A skylark model (Graph or Sequential) with `model`'s architecture (a model, a config
    list, or a name/.json/module:function) and the weights of the `framework` file at
    `path`."""
    p = read_weights(path, framework, model, input_shape, dtype)
    net = from_config([dict(s) for s in p.spec], dtype=p.dtype)
    net.load_state(p.state)
    return net


__all__ = ["TARGETS", "VerificationError", "check_out", "export_weights", "load_from",
           "portable", "read_checkpoint", "read_weights", "verify_file", "verify_line"]
