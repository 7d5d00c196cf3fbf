"""CIFAR-10's binary version: the record layout, folders, every bad file, and `skylark train` on it.

Every file is written here (tmp_path) by an encoder independent of the reader; no download.
"""

import builtins
import errno
import gzip
import os
import pickle
import re

import numpy as np
import pytest
from idxdata import idx_folder, one_line_error, run_cli

from skylark.data import CIFARError, load_dataset, read_cifar10, read_cifar10_batch
from skylark.data import cifar as cifar_module
from skylark.data.cifar import CIFAR10_CLASSES, RECORD_BYTES, TEST_FILE, TRAIN_FILES
from skylark.model import read_checkpoint

ENV = "SKYLARK_CIFAR10_DIR"


def in_message(*parts):
    return ".*".join(re.escape(str(p)) for p in parts)


def record(label, pixel):
    """One record, written pixel by pixel as the format page says: the label byte, then for
    red, green, blue in turn the 32 rows of 32 values; ``pixel(c, row, col)`` gives each."""
    out = bytearray([label])
    for c in range(3):
        for row in range(32):
            for col in range(32):
                out.append(pixel(c, row, col))
    return bytes(out)


def batch_bytes(images, labels):
    """Records of (n, 3, 32, 32) uint8 images and labels: each label byte, then the image's
    3,072 bytes in C order (red plane, green, blue; rows), checked against `record` below."""
    return b"".join(bytes([int(y)]) + np.ascontiguousarray(x, np.uint8).tobytes()
                    for x, y in zip(images, labels, strict=True))


def put(path, data, gz=False):
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def cifar_folder(folder, n=(3, 2, 1, 2, 4, 3), seed=0, gz=False, meta=None):
    """The six binary batches with n[0..4] train and n[5] test records of random pixels and
    labels; returns (folder, expected) with expected the uint8/int64 arrays a reader must give
    (train = the five data batches in order)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for stem, count in zip((*TRAIN_FILES, TEST_FILE), n, strict=True):
        x = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, count)
        put(folder / (stem + (".gz" if gz else "")), batch_bytes(x, y), gz=gz)
        xs.append(x)
        ys.append(y)
    if meta is not None:
        (folder / "batches.meta.txt").write_text(meta)
    expected = {"x_train": np.concatenate(xs[:5]), "y_train": np.concatenate(ys[:5]),
                "x_test": xs[5], "y_test": ys[5]}
    return folder, expected


# ---------------------------------------------------------------- the record layout


def test_channel_order_and_row_major_layout(tmp_path):
    """Three records whose values, read together, name each pixel's channel, row and column:
    the reader must put byte 1 + c*1024 + row*32 + col of a record at [c, row, col]."""
    data = (record(3, lambda c, row, col: 10 + 100 * c)  # red 10, green 110, blue 210
            + record(0, lambda c, row, col: row)
            + record(9, lambda c, row, col: 100 + col))
    images, labels = read_cifar10_batch(put(tmp_path / "data_batch_1.bin", data))
    c, row, col = np.indices((3, 32, 32))
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], 10 + 100 * c)
    np.testing.assert_array_equal(images[1], row)
    np.testing.assert_array_equal(images[2], 100 + col)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 0, 9]
    assert images.flags.writeable and images.flags.c_contiguous


def test_batch_bytes_is_the_format():
    """The bulk encoder the other tests use writes what `record` writes pixel by pixel."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    assert batch_bytes(x, [7, 2]) == b"".join(
        record(y, lambda c, row, col, i=i: int(x[i, c, row, col])) for i, y in enumerate((7, 2)))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_folder_loads(tmp_path, gz, dtype):
    folder, want = cifar_folder(tmp_path / "cifar-10-batches-bin", gz=gz)
    ds = load_dataset(folder, dtype=dtype)
    assert ds.name == "cifar-10" and ds.num_classes == 10 and ds.input_shape == (3, 32, 32)
    assert ds.x_train.shape == (12, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.x_train.dtype == dtype and ds.y_train.dtype == ds.y_test.dtype == np.int64
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        np.testing.assert_array_equal(x, (want[f"x_{split}"] / 255 - 0.5).astype(dtype))
        np.testing.assert_array_equal(y, want[f"y_{split}"])
    raw = read_cifar10(folder)
    np.testing.assert_array_equal(raw.x_train, want["x_train"])
    assert raw.class_names == CIFAR10_CLASSES


def test_scaled_like_idx_data(tmp_path):
    """Pixel 0 is -0.5 and 255 is +0.5 exactly, as the IDX datasets are scaled."""
    folder = tmp_path / "c"
    folder.mkdir()
    x = np.zeros((2, 3, 32, 32), np.uint8)
    x[1] = 255
    for stem in (*TRAIN_FILES, TEST_FILE):
        put(folder / stem, batch_bytes(x, [0, 9]))
    ds = load_dataset(folder)
    assert ds.x_train.min() == -0.5 and ds.x_train.max() == 0.5
    assert ds.y_train.tolist() == [0, 9] * 5


def test_gzip_detected_by_magic_bytes_and_mixed(tmp_path):
    """A gzip file named .bin is read, and raw and .gz batches may be mixed in one folder."""
    folder, want = cifar_folder(tmp_path / "c")
    put(folder / TRAIN_FILES[0], gzip.compress((folder / TRAIN_FILES[0]).read_bytes()))
    os.rename(folder / TEST_FILE, folder / (TEST_FILE + ".gz"))  # a raw file named .gz
    ds = read_cifar10(folder)
    np.testing.assert_array_equal(ds.x_train, want["x_train"])
    np.testing.assert_array_equal(ds.y_test, want["y_test"])


def test_class_names(tmp_path):
    names = [f"class{i}" for i in range(10)]
    folder, _ = cifar_folder(tmp_path / "c", meta="\n".join(names) + "\n\n")  # as published
    assert read_cifar10(folder).class_names == tuple(names)
    (folder / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(CIFARError, match=in_message(folder / "batches.meta.txt",
                                                    "expected 10 class names",
                                                    "Received: 2 names ['a', 'b']")):
        load_dataset(folder)


# ---------------------------------------------------------------- bad files

ONE = record(1, lambda c, row, col: 7)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", r"empty file.*Received: 0 bytes"),
        (ONE[:-5], r"not a multiple of the 3073-byte record.*0 records and 3068 bytes"
                   r".*Received: 3068 bytes"),
        (ONE * 2 + ONE[:100], r"truncated.*2 records and 100 bytes.*Received: 6246 bytes"),
        (ONE + b"\x00" * 10, r"1 records and 10 bytes.*Received: 3083 bytes"),
        (ONE * 2 + b"\x0a" + ONE[1:], r"expected labels in 0..9; 1 of 3 records.*"
                                      r"Received: label=10 in record 2"),
        (b"\xff" + ONE[1:] + ONE + b"\x0c" + ONE[1:],
         r"2 of 3 records have others, the first record 0.*Received: label=255 in record 0"),
        (b"\x1f\x8b\x08\x00garbage-garbage", r"corrupt gzip.*Received: 19 compressed bytes"),
        (gzip.compress(ONE)[:-6], r"corrupt gzip.*Received: \d+ compressed bytes"),
        (gzip.compress(ONE[:-1]), r"not a multiple.*Received: 3072 bytes once decompressed"),
        (gzip.compress(b""), r"empty file.*Received: 0 bytes once decompressed"),
        (pickle.dumps({b"data": b"x"}, protocol=2),
         r"Python pickle.*use the binary version.*Received: first bytes 80 02"),
    ],
    ids=["empty", "truncated-record", "truncated", "trailing", "label-10", "labels-255",
         "bad-gzip", "cut-gzip", "gzip-truncated", "gzip-empty", "pickle"],
)
def test_bad_batch(tmp_path, data, message):
    path = put(tmp_path / "data_batch_1.bin", data)
    with pytest.raises(CIFARError, match=in_message(path) + ".*" + message):
        read_cifar10_batch(path)


def test_bad_last_batch_fails_the_whole_load(tmp_path):
    """Four good training batches and a bad fifth: an error naming the fifth, no dataset."""
    folder, _ = cifar_folder(tmp_path / "c")
    bad = folder / TRAIN_FILES[4]
    put(bad, bad.read_bytes()[:-1])
    n = 4 * RECORD_BYTES - 1
    with pytest.raises(CIFARError, match=in_message(bad, f"Received: {n} bytes")):
        load_dataset(folder)


def test_missing_files_named(tmp_path):
    folder, _ = cifar_folder(tmp_path / "c")
    os.remove(folder / TRAIN_FILES[2])
    os.remove(folder / TEST_FILE)
    (folder / TEST_FILE).mkdir()  # a folder is not the file
    with pytest.raises(FileNotFoundError,
                       match=in_message(folder, "missing here: data_batch_3.bin, test_batch.bin")):
        load_dataset(folder)


def test_unreadable_files(tmp_path, monkeypatch):
    """Permission denied and an I/O error, whoever runs the tests (root reads a chmod 000 file),
    and a folder where a file should be: each names the file."""
    folder, _ = cifar_folder(tmp_path / "c")
    denied, broken = str(folder / TRAIN_FILES[1]), str(folder / TEST_FILE)

    def fake_open(path, *args, **kwargs):
        if str(path) == denied:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        if str(path) == broken:
            raise OSError(errno.EIO, "Input/output error", path)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(cifar_module, "open", fake_open, raising=False)
    with pytest.raises(PermissionError, match=in_message(denied, "permission denied",
                                                         f"Received: {denied!r}")):
        load_dataset(folder)
    with pytest.raises(CIFARError, match=in_message(broken, "Input/output error")):
        read_cifar10_batch(broken)
    with pytest.raises(CIFARError, match=in_message(tmp_path, "a folder, not a CIFAR-10 batch")):
        read_cifar10_batch(tmp_path)
    with pytest.raises(FileNotFoundError, match=in_message(tmp_path / "nope.bin", "no such")):
        read_cifar10_batch(tmp_path / "nope.bin")


# ---------------------------------------------------------------- other forms of CIFAR-10


@pytest.mark.parametrize(
    "names, message",
    [
        (["data_batch_1", "test_batch", "batches.meta"],
         "pickled python version (data_batch_1, test_batch, batches.meta)"),
        (["cifar-10-python.tar.gz"], "pickled python version (cifar-10-python.tar.gz)"),
        (["cifar-10-batches-py/"], "pickled python version (cifar-10-batches-py)"),
    ],
    ids=["batches", "tarball", "subfolder"],
)
def test_python_version_refused(tmp_path, names, message):
    folder = tmp_path / "d"
    folder.mkdir()
    for name in names:
        (folder / name).mkdir() if name.endswith("/") else (folder / name).write_bytes(b"\x80\x02")
    with pytest.raises(CIFARError, match=in_message(folder, message, "use the binary version",
                                                    "cifar-10-binary.tar.gz",
                                                    "cifar-10-batches-bin")):
        load_dataset(folder)


def test_binary_tarball_and_parent_folder(tmp_path):
    parent = tmp_path / "p"
    cifar_folder(parent / "cifar-10-batches-bin")
    with pytest.raises(CIFARError, match=in_message(f"pass {parent / 'cifar-10-batches-bin'}")):
        load_dataset(parent)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(CIFARError, match=in_message("not extracted",
                                                    "tar xzf cifar-10-binary.tar.gz")):
        load_dataset(tmp_path / "t")


def test_idx_folder_beside_cifar_files_is_still_idx(tmp_path):
    """A folder of IDX files that also holds a CIFAR-10 tarball or subfolder is an IDX folder."""
    folder = idx_folder(tmp_path / "m", n=(4, 2))
    (folder / "cifar-10-python.tar.gz").write_bytes(b"")
    (folder / "cifar-10-batches-bin").mkdir()
    ds = load_dataset(folder)
    assert ds.name == "m" and ds.input_shape == (1, 8, 8)


def test_env_and_name(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=in_message("never downloads",
                                                           f"{ENV} unset")):
        load_dataset("cifar-10")
    monkeypatch.setenv(ENV, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=in_message(f"{ENV}='{tmp_path / 'gone'}'")):
        load_dataset("cifar-10")
    folder, want = cifar_folder(tmp_path / "c")
    monkeypatch.setenv(ENV, str(folder))
    ds = load_dataset("cifar-10")
    assert ds.name == "cifar-10" and ds.x_train.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(ds.y_train, want["y_train"])
    monkeypatch.setenv(ENV, str(idx_folder(tmp_path / "m", n=(4, 2))))  # not a CIFAR-10 folder
    with pytest.raises(FileNotFoundError, match=in_message("missing here: data_batch_1.bin")):
        load_dataset("cifar-10")


# ---------------------------------------------------------------- the CLI


def test_train_end_to_end(tmp_path):
    """`skylark train` on a tiny CIFAR-10 folder: the Skylark net built for (3, 32, 32) from
    the data, one epoch, a checkpoint that records the input shape (what `export` reads)."""
    folder, _ = cifar_folder(tmp_path / "cifar-10-batches-bin", n=(8, 8, 8, 8, 8, 10))
    ckpt = tmp_path / "c.npz"
    proc = run_cli("train", "--dataset", folder, "--model", "skylark", "--epochs", "1",
                   "--batch-size", "16", "--quiet", "--save", ckpt)
    assert proc.returncode == 0, proc.stderr
    assert "Dataset('cifar-10', train=(40, 3, 32, 32), test=(10, 3, 32, 32)" in proc.stderr
    assert "final test accuracy" in proc.stdout
    arrays, meta, _ = read_checkpoint(ckpt)
    assert [w.shape for w in arrays.values() if w.ndim == 4] == [(8, 3, 3, 3)]  # 3 channels in
    assert meta["input_shape"] == [3, 32, 32] and meta["dataset"] == "cifar-10"
    portable, _ = pytest.importorskip("reference.porting").read_checkpoint(ckpt)
    assert portable.input_shape == (3, 32, 32)  # `skylark export` would have guessed (1, 28, 28)


def test_train_bad_file_one_line_error(tmp_path):
    folder, _ = cifar_folder(tmp_path / "c")
    bad = put(folder / TEST_FILE, ONE * 2 + b"\x0b" + ONE[1:])
    proc = run_cli("train", "--dataset", folder, "--epochs", "1", "--quiet")
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert line.startswith("skylark train: error: ") and str(bad) in line
    assert "Received: label=11 in record 2" in line
