"""Read CIFAR-10's binary version (https://www.cs.toronto.edu/~kriz/cifar.html); never the pickle.

The binary version is a folder, ``cifar-10-batches-bin``, of six files: ``data_batch_1.bin`` ...
``data_batch_5.bin`` (the training set, in that order) and ``test_batch.bin``, and optionally
``batches.meta.txt`` (the ten class names, one a line). Each .bin file is a run of 3,073-byte
records: one label byte 0..9, then 3,072 pixel bytes, the 1,024 red, the 1,024 green and the
1,024 blue values of a 32x32 image, each plane row-major. The published files hold 10,000 records
each; any whole number of records, at least one, is read. A file may also be gzip-compressed
(found as ``data_batch_1.bin.gz``, or detected by its magic bytes ``1f 8b``: a raw file cannot start
with them, since 0x1f is not a label).

The pickled "python version" (``data_batch_1`` without .bin, ``cifar-10-python.tar.gz``) is
refused with a message that says to use the binary version: unpickling can run code from the file.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

import numpy as np

from .idx import gunzip

__all__ = ["CIFAR10", "CIFAR10_CLASSES", "RECORD_BYTES", "TEST_FILE", "TRAIN_FILES", "CIFARError",
           "cifar10_kind", "read_cifar10", "read_cifar10_batch"]

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
IMAGE_SHAPE = (3, 32, 32)  # (C, H, W): the red, green and blue planes, each 32x32 row-major
RECORD_BYTES = 1 + 3 * 32 * 32  # 3,073: the label byte, then the pixels
NUM_CLASSES = 10
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")  # what batches.meta.txt says, in label order
SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"
# names that say "this folder is about CIFAR-10" without holding the binary files
_PYTHON_FILES = ("data_batch_1", "test_batch", "batches.meta", "cifar-10-python.tar.gz",
                 "cifar-10-batches-py")
_BIN_SUBFOLDER, _BIN_TARBALL = "cifar-10-batches-bin", "cifar-10-binary.tar.gz"


class CIFARError(ValueError):
    """A file that is not a valid CIFAR-10 binary batch, or a folder of the wrong version."""


class CIFAR10(NamedTuple):
    """CIFAR-10 as stored: images (N, 3, 32, 32) uint8, labels (N,) int64 in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]  # batches.meta.txt's, else CIFAR10_CLASSES


def cifar10_kind(folder: str | os.PathLike) -> str | None:
    """``"binary"`` when `folder` holds any of the six .bin batches (raw or .gz), ``"other"``
    when it holds another form of CIFAR-10 (the pickled batches, a tarball, a
    cifar-10-batches-bin subfolder: `read_cifar10` then says what to pass instead), else None."""
    folder = os.fspath(folder)
    for stem in (*TRAIN_FILES, TEST_FILE):
        if any(os.path.isfile(os.path.join(folder, stem + gz)) for gz in ("", ".gz")):
            return "binary"
    others = (*_PYTHON_FILES, _BIN_SUBFOLDER, _BIN_TARBALL)
    return "other" if any(os.path.exists(os.path.join(folder, n)) for n in others) else None


def read_cifar10(folder: str | os.PathLike) -> CIFAR10:
    """The CIFAR-10 binary folder `folder`: train = data_batch_1.bin ... data_batch_5.bin
    concatenated in that order, test = test_batch.bin, class names from batches.meta.txt.

    All or nothing: FileNotFoundError naming every missing batch, PermissionError, or CIFARError
    naming the file and what it found (see `read_cifar10_batch`); CIFARError saying to use the
    binary version for a folder of the pickled one."""
    folder = os.fspath(folder)
    paths = {stem: find_file(folder, stem) for stem in (*TRAIN_FILES, TEST_FILE)}
    missing = [stem for stem, path in paths.items() if path is None]
    if missing:
        if len(missing) == len(paths) and (message := _not_binary_message(folder)):
            raise CIFARError(message)
        raise FileNotFoundError(
            f"{folder}: a CIFAR-10 binary folder holds data_batch_1.bin ... data_batch_5.bin "
            f"and test_batch.bin (raw or .gz); missing here: {', '.join(missing)}."
        )
    train = [read_cifar10_batch(paths[stem]) for stem in TRAIN_FILES]
    x_test, y_test = read_cifar10_batch(paths[TEST_FILE])
    names = _class_names(os.path.join(folder, META_FILE))
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return CIFAR10(x_train, y_train, x_test, y_test, names)


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch file, raw or gzip: (images (N, 3, 32, 32) uint8 in R, G, B
    order, labels (N,) int64 in 0..9), N >= 1 the number of 3,073-byte records.

    Raises FileNotFoundError, PermissionError, or CIFARError naming the file and what it found:
    an empty file, a size that is not a whole number of records, a label out of 0..9 (the first
    such record named), corrupt gzip data, a pickle."""
    name = os.fspath(path)
    data, what = _read_bytes(name)
    n, extra = divmod(len(data), RECORD_BYTES)
    if not data:
        raise CIFARError(f"{name}: empty file: expected records of {RECORD_BYTES} bytes (1 label "
                         f"byte, 3,072 pixel bytes). Received: 0 {what}")
    if extra:
        raise CIFARError(
            f"{name}: truncated or not a CIFAR-10 batch: its size is not a multiple of the "
            f"{RECORD_BYTES}-byte record (1 label byte, 3,072 pixel bytes), but {n} records and "
            f"{extra} bytes. Received: {len(data)} {what}"
        )
    records = np.frombuffer(data, np.uint8).reshape(n, RECORD_BYTES)
    labels = records[:, 0]
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise CIFARError(
            f"{name}: expected labels in 0..9; {bad.size} of {n} records have others, the first "
            f"record {i} (byte offset {i * RECORD_BYTES}). "
            f"Received: label={labels[i]} in record {i}"
        )
    images = records[:, 1:].reshape(n, *IMAGE_SHAPE).copy()  # a writable copy, not the bytes
    return images, labels.astype(np.int64)


def _read_bytes(name: str) -> tuple[bytes, str]:
    """The file's bytes (gunzipped when it is gzip) and how to call them in an error; the
    read's own failures and a pickle as the errors read_cifar10_batch promises."""
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such CIFAR-10 batch file.") from None
    except PermissionError:
        raise PermissionError(f"{name}: permission denied: cannot read this CIFAR-10 batch file. "
                              f"Received: {name!r}") from None
    except IsADirectoryError:
        raise CIFARError(f"{name}: a folder, not a CIFAR-10 batch file. Received: {name!r}") \
            from None
    except OSError as e:
        raise CIFARError(f"{name}: cannot read this file ({e.strerror or e}). "
                         f"Received: {name!r}") from None
    raw = data
    data = gunzip(name, raw, CIFARError)
    what = "bytes" if data is raw else "bytes once decompressed"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CIFARError(
            f"{name}: a Python pickle (CIFAR-10's python version), which skylark does not read: "
            f"use the binary version (cifar-10-binary.tar.gz from {SOURCE}). "
            f"Received: first bytes {data[:2].hex(' ')}"
        )
    return data, what


def find_file(folder: str, stem: str) -> str | None:
    """folder/stem or folder/stem.gz, whichever is a file (stem first), else None."""
    for path in (os.path.join(folder, stem), os.path.join(folder, stem + ".gz")):
        try:
            st = os.stat(path)  # not os.path.isfile: it says False in a folder we may not search
        except FileNotFoundError:
            continue
        except PermissionError:
            raise PermissionError(f"{folder}: permission denied: cannot look inside this folder "
                                  f"for {stem}. Received: dataset={folder!r}") from None
        if stat.S_ISREG(st.st_mode):
            return path
    return None


def _not_binary_message(folder: str) -> str | None:
    """What to pass instead, for a folder that holds another form of CIFAR-10; else None."""
    sub = os.path.join(folder, _BIN_SUBFOLDER)
    if os.path.isdir(sub):
        return (f"{folder}: the CIFAR-10 binary files are in its subfolder {_BIN_SUBFOLDER}: "
                f"pass {sub} instead. Received: dataset={folder!r}")
    if os.path.isfile(os.path.join(folder, _BIN_TARBALL)):
        return (f"{folder}: holds {_BIN_TARBALL}, not extracted: run `tar xzf {_BIN_TARBALL}` "
                f"there and pass the {_BIN_SUBFOLDER} folder it makes. "
                f"Received: dataset={folder!r}")
    found = [n for n in _PYTHON_FILES if os.path.exists(os.path.join(folder, n))]
    if found:
        return (f"{folder}: CIFAR-10's pickled python version ({', '.join(found)}), which skylark "
                f"does not read (unpickling can run code from the file): use the binary version, "
                f"{_BIN_TARBALL} from {SOURCE}, extracted, and pass its {_BIN_SUBFOLDER} folder. "
                f"Received: dataset={folder!r}")
    return None


def _class_names(path: str) -> tuple[str, ...]:
    """The class names in batches.meta.txt (one a line, blank lines ignored), else the standard
    CIFAR10_CLASSES when there is no such file; CIFARError unless it names 10 classes."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return CIFAR10_CLASSES
    except OSError as e:
        raise CIFARError(f"{path}: cannot read this file ({e.strerror or e}). "
                         f"Received: {path!r}") from None
    try:
        names = tuple(line.strip() for line in raw.decode("utf-8").splitlines() if line.strip())
    except UnicodeDecodeError as e:
        raise CIFARError(f"{path}: not text ({e.reason} at byte {e.start}). "
                         f"Received: {len(raw)} bytes") from None
    if len(names) != NUM_CLASSES:
        raise CIFARError(f"{path}: expected {NUM_CLASSES} class names, one a line. "
                         f"Received: {len(names)} names {list(names[:12])}")
    return names
