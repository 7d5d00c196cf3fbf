"""Read and write IDX files, the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

An IDX file is a 4-byte magic number ``00 00 <type code> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the data in C order, big-endian. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import NamedTuple

import numpy as np

from ..files import atomic_write

__all__ = ["IDXError", "read_idx", "write_idx"]

# type code -> dtype as stored in the file (big-endian for multi-byte types)
_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_KINDS = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
_EXPECTED_CODES = "0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64"


class IDXError(ValueError):
    """A file that is not a valid IDX file (bad header, wrong size, corrupt gzip)."""


class _Header(NamedTuple):
    """An IDX header, checked: the stored (big-endian) dtype, the shape, where the data starts."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int



def gunzip(name: str, data: bytes, error: type[ValueError]) -> bytes:
    """`data` decompressed when it starts with gzip's magic bytes, else as it is; `error`
    (the reader's ValueError) naming file `name` for corrupt gzip data."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise error(f"{name}: corrupt gzip data ({e}). Received: {len(data)} compressed "
                    f"bytes") from None

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip (detected by its magic bytes ``1f 8b``).

    Returns an array of the shape the header gives, e.g. (60000, 28, 28) uint8 for MNIST images,
    in native byte order. Raises FileNotFoundError, PermissionError, or IDXError naming the file
    and what it found.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"{name}: no such IDX file.")
    try:
        with open(name, "rb") as f:
            data = f.read()
    except PermissionError:
        raise PermissionError(f"{name}: permission denied: cannot read this IDX file. "
                              f"Received: {name!r}") from None
    except IsADirectoryError:
        raise IDXError(f"{name}: a folder, not an IDX file. Received: {name!r}") from None
    data = gunzip(name, data, IDXError)
    header = _read_header(name, data)
    dtype, shape = header.dtype, header.shape
    expected = dtype.itemsize
    for d in shape:
        expected *= d  # Python ints: no overflow for headers claiming huge shapes
    got = len(data) - header.offset
    if got != expected:
        what = "truncated" if got < expected else f"{got - expected} trailing bytes after the data"
        raise IDXError(
            f"{name}: {what}: header says {expected} bytes of data for shape {shape}, "
            f"Received: {got} bytes"
        )
    try:
        array = np.frombuffer(data, dtype=dtype, offset=header.offset).reshape(shape)
    except ValueError:  # zero-size array whose other dims overflow numpy's limits
        raise IDXError(f"{name}: shape too large for an array, Received: shape={shape}") from None
    return array.astype(dtype.newbyteorder("="))  # a writable, native-order copy


def _read_header(name: str, data: bytes) -> _Header:
    """Parse and check the magic number and dimensions at the start of `data` (file `name`)."""
    if len(data) < 4:
        what = "empty file" if not data else "too short for the 4-byte IDX magic number"
        raise IDXError(f"{name}: {what}. Received: {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in _CODES:
        raise IDXError(
            f"{name}: bad magic number. Expected 0x00000803 or similar (two zero bytes, a type "
            f"code out of {_EXPECTED_CODES}, then ndim), Received: magic=0x{magic:08X}"
        )
    if ndim == 0:
        raise IDXError(f"{name}: expected at least 1 dimension, Received: ndim=0")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise IDXError(
            f"{name}: header truncated: {ndim} dimensions need {start} header bytes, "
            f"Received: {len(data)} bytes"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return _Header(np.dtype(_CODES[code]), shape, start)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` (any shape with 1-255 dims, dtype uint8/int8/int16/int32/float32/float64)
    as an IDX file, gzip-compressed if ``path`` ends in ``.gz``. Written atomically.
    """
    name = os.fspath(path)
    array = np.asarray(array)
    kind = array.dtype.str[1:]
    if kind not in _KINDS:
        raise ValueError(
            f"write_idx: unsupported dtype. Expected one of uint8, int8, int16, int32, float32, "
            f"float64, Received: dtype={array.dtype}"
        )
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(
            f"write_idx: expected 1 to 255 dims, each < 2**32, Received: shape={array.shape}"
        )
    header = bytes([0, 0, _KINDS[kind], array.ndim])
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    body = header + np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).tobytes()
    if name.endswith(".gz"):
        body = gzip.compress(body, compresslevel=6, mtime=0)  # mtime=0: reproducible bytes
    atomic_write(name, lambda f: f.write(body))
