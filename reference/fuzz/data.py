"""The data oracle: the case's input batch and labels, written as IDX files by a writer of this
module's own (struct, big-endian, as the format's description says), read back by skylark's
loader (skylark.data.read_idx), must come back equal, in the dtype written.

    plan["idx"] = draw_idx(seed, index)      # on every case: a dtype, a shape, gzip or not
    failures = idx_failures(plan, tmp_dir)

The writer shares no code with skylark's (skylark.data.write_idx): the header is
`00 00 <type code> <ndim>`, then ndim big-endian uint32 dimensions, then the values packed
big-endian by `struct`, so a reader that is off in its header length or its byte order reads
other values than these (or refuses the file's size).
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from skylark.data import read_idx

from ..inputs import make_batch

STREAM = 5  # draws from default_rng((seed, index, STREAM)): every other draw stays as it was
# dtype -> (IDX type code, struct format character), as the IDX format defines the codes
CODES = {"uint8": (0x08, "B"), "int8": (0x09, "b"), "int16": (0x0B, "h"), "int32": (0x0C, "i"),
         "float32": (0x0D, "f"), "float64": (0x0E, "d")}
LAYOUTS = ("nchw", "n-flat", "nc-hw", "flat", "nc-h-w")


def draw_idx(seed: int, index: int) -> dict:
    """The dtype, layout (how the (N, C, H, W) batch is reshaped) and compression of case
    `index`'s IDX files."""
    rng = np.random.default_rng((int(seed), int(index), STREAM))
    return {"dtype": str(rng.choice(list(CODES))), "layout": str(rng.choice(LAYOUTS)),
            "gzip": bool(rng.random() < 0.3)}


def _shape(layout: str, n, c, h, w) -> tuple:
    return {"nchw": (n, c, h, w), "n-flat": (n, c * h * w), "nc-hw": (n * c, h * w),
            "flat": (n * c * h * w,), "nc-h-w": (n * c, h, w)}[layout]


def representable(x: np.ndarray, dtype: str) -> list:
    """`x`'s values made exact in `dtype`, as Python numbers: an integer dtype gets x's range
    stretched over its own (so every byte of a wide type varies); float32 its rounding."""
    x = np.asarray(x, np.float64).reshape(-1)
    if dtype in ("float32", "float64"):
        return [float(v) for v in x.astype(dtype)]
    info = np.iinfo(dtype)
    span = float(x.max() - x.min()) or 1.0
    scaled = (x - x.min()) / span * (float(info.max) - float(info.min)) + float(info.min)
    return [int(min(max(round(v), info.min), info.max)) for v in scaled]


def write(path: str, values: list, shape: tuple, dtype: str, compress: bool) -> None:
    """An IDX file of `values` (C order) of `shape` in `dtype`, by struct alone."""
    code, fmt = CODES[dtype]
    body = (struct.pack(">BBBB", 0, 0, code, len(shape))
            + struct.pack(f">{len(shape)}I", *shape)
            + struct.pack(f">{len(values)}{fmt}", *values))
    with open(path, "wb") as f:
        f.write(gzip.compress(body, mtime=0) if compress else body)


def idx_failures(plan: dict, tmp: str) -> list[dict]:
    """[] when skylark reads the case's images and labels back exactly (values, shape, dtype)."""
    d = plan["idx"]
    x, labels, _ = make_batch(plan["input"], plan["batch"], tuple(plan["input_shape"]), 10,
                              plan["seed"], "float64")
    cases = (("images", x, _shape(d["layout"], *x.shape)), ("labels", labels, labels.shape))
    for what, a, shape in cases:
        values = representable(a, d["dtype"])
        path = os.path.join(tmp, f"{what}.idx" + (".gz" if d["gzip"] else ""))
        write(path, values, shape, d["dtype"], d["gzip"])
        want = np.array(values, d["dtype"]).reshape(shape)
        try:
            got = read_idx(path)
        except ValueError as e:
            detail = f"{type(e).__name__}: {e}"
        else:
            detail = _difference(got, want)
        if detail:
            return [{"framework": "numpy-idx",
                     "signature": f"numpy-idx FAIL: {d['dtype']} {what} read back",
                     "detail": f"{d['dtype']} {what} of shape {shape}: {detail}"}]
    return []


def _difference(got: np.ndarray, want: np.ndarray) -> str:
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"read as {got.dtype} {got.shape}, written as {want.dtype} {want.shape}"
    if not np.array_equal(got, want):
        i = int(np.argmax((got != want).reshape(-1)))
        return f"element {i} read as {got.reshape(-1)[i]!r}, written as {want.reshape(-1)[i]!r}"
    return ""
