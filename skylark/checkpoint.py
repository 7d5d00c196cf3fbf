"""Checkpoint files: reading a `.npz` checkpoint, and loading arrays into a model all or nothing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

_META_KEY = "__skylark_meta__"
_EXTRA = "__extra__/"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist (both a ValueError and a FileNotFoundError)."""


def read_checkpoint(path) -> tuple[dict, dict, dict]:
    """(state arrays, metadata dict, extra arrays) of the checkpoint at `path`, loading
    nothing into any model; CheckpointError (a ValueError) for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint at this path. Received: path={str(path)!r}")
    try:
        # Open the file ourselves: np.load(path) leaks its handle when the zip is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r} (corrupt or not an .npz): {e}"
        ) from e
    meta = _metadata(arrays.pop(_META_KEY, None), path)
    extra = {k[len(_EXTRA):]: arrays.pop(k) for k in list(arrays) if k.startswith(_EXTRA)}
    return arrays, meta, extra

def _metadata(meta, path: Path) -> dict:
    """The checkpoint's metadata as a dict ({} when it has none); CheckpointError otherwise."""
    if meta is None:
        return {}
    try:
        out = json.loads(str(meta)) if meta.ndim == 0 and meta.dtype.kind == "U" else None
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: its metadata is not a JSON object. "
                              f"Received: {str(meta)[:80]!r}")
    return out


def _load(own: dict, mapping) -> None:
    """Copy `mapping` into the arrays of `own`, all or nothing (see Sequential.load_params)."""
    missing = [k for k in own if k not in mapping]
    extra = [k for k in mapping if k not in own]
    if missing or extra:
        raise ValueError(
            f"parameters do not match the model. Missing: {missing}; unexpected: {extra}. "
            f"Expected keys: {list(own)}"
        )
    arrays = {k: np.asarray(mapping[k]) for k in own}
    for k, p in own.items():
        check_entry(k, arrays[k], p)
    for k, p in own.items():  # only once every entry has passed: all or nothing
        np.copyto(p, arrays[k], casting="same_kind")


def check_entry(name: str, a: np.ndarray, p: np.ndarray) -> None:
    """ValueError naming `name` unless `a` can replace `p` exactly as given: the same shape,
    real numbers, finite, and still finite once rounded to `p`'s dtype."""
    if a.shape != p.shape:
        raise ValueError(f"parameter {name!r} has the wrong shape. Expected: {p.shape}. "
                         f"Received: shape {a.shape}")
    if a.dtype.kind not in "fiu":  # complex would drop its imaginary part; bool, str: no numbers
        raise ValueError(f"parameter {name!r} must hold real numbers. Received: dtype={a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"parameter {name!r} holds nan or inf values")
    with np.errstate(over="ignore"):
        cast = a.astype(p.dtype)
    if not np.isfinite(cast).all():
        worst = a.flat[int(np.argmax(~np.isfinite(cast).ravel()))]
        raise ValueError(f"parameter {name!r} overflows {p.dtype} (largest finite "
                         f"{np.finfo(p.dtype).max:.3g}). Received: a value {float(worst)!r}")
