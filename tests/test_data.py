"""Data layer: IDX reading/writing, dataset loading, deterministic batches."""

import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skylark.data import DATASETS, IDXError, batches, load_dataset, read_idx, write_idx
from skylark.data import datasets as datasets_module

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
FAST = settings(max_examples=60, deadline=None, database=None)  # database=None: no .hypothesis/


def idx_bytes(array):
    """Reference encoder, independent of write_idx: header then big-endian C-order data."""
    code = {"u1": 8, "i1": 9, "i2": 11, "i4": 12, "f4": 13, "f8": 14}[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def put(path, data):
    path.write_bytes(data)
    return path


def make_folder(folder, n=(5, 3), hw=(4, 4), gz=True, labels=None):
    """The four MNIST-format files with n[0] train and n[1] test images of size hw."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, count in zip(("train", "t10k"), n, strict=True):
        images = rng.integers(0, 256, (count, *hw), dtype=np.uint8)
        y = rng.integers(0, 10, count, dtype=np.uint8) if labels is None else labels
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", y)
    return folder


def in_message(*parts):
    return ".*".join(re.escape(str(p)) for p in parts)


# ---------------------------------------------------------------- IDX round trips


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5), (0, 28, 28), (1, 1, 1, 2)], ids=str)
def test_round_trip(tmp_path, suffix, dtype, shape):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == shape and out.dtype == array.dtype and out.dtype.isnative
    assert out.flags.writeable
    np.testing.assert_array_equal(out, array)
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    assert raw == idx_bytes(array)
    assert os.listdir(tmp_path) == [path.name]  # the temp file was renamed, not left behind


@FAST
@given(
    array=hnp.arrays(
        st.sampled_from(DTYPES),
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    ),
    suffix=st.sampled_from(["", ".gz"]),
)
def test_round_trip_property(tmp_path_factory, array, suffix):
    path = tmp_path_factory.mktemp("rt") / f"x{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == array.shape and out.dtype == array.dtype
    assert out.tobytes() == array.tobytes()  # bitwise: NaNs and -0.0 survive


def test_gzip_detected_by_magic_bytes_not_suffix(tmp_path):
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    gz_named_raw = put(tmp_path / "raw", gzip.compress(idx_bytes(array)))
    raw_named_gz = put(tmp_path / "plain.gz", idx_bytes(array))
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_write_idx_rejects_unsupported(tmp_path):
    with pytest.raises(ValueError, match=r"Received: dtype=int64"):
        write_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"Received: dtype=bool"):
        write_idx(tmp_path / "a", np.zeros(3, bool))
    with pytest.raises(ValueError, match=r"Received: shape=\(\)"):
        write_idx(tmp_path / "a", np.uint8(3))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- IDX errors

GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))  # 16-byte header, 24 data bytes


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty", b"", r"empty file.*Received: 0 bytes"),
        ("short", b"\x00\x00\x08", r"Received: 3 bytes"),
        ("truncated", GOOD[:-5], r"truncated: header says 24 bytes.*Received: 19 bytes"),
        ("trailing", GOOD + b"xyz", r"3 trailing bytes.*header says 24 bytes.*Received: 27 bytes"),
        ("magic", b"\x12\x34\x56\x78" + GOOD[4:], r"bad magic.*Received: magic=0x12345678"),
        ("typecode", b"\x00\x00\x07\x03" + GOOD[4:], r"bad magic.*Received: magic=0x00000703"),
        ("ndim0", b"\x00\x00\x08\x00" + GOOD[4:], r"at least 1 dimension.*Received: ndim=0"),
        ("dims-cut", GOOD[:10], r"3 dimensions need 16 header bytes.*Received: 10 bytes"),
        # header claims 4 dims: the 4th "dim" eats data bytes, the rest no longer matches
        ("ndim-wrong", b"\x00\x00\x08\x04" + GOOD[4:], r"Received: 20 bytes"),
        ("bad-gzip", b"\x1f\x8b\x08\x00garbage-garbage", r"corrupt gzip.*Received: 19 compressed"),
        ("cut-gzip", gzip.compress(GOOD)[:-12], r"corrupt gzip.*Received: \d+ compressed bytes"),
    ],
)
def test_read_idx_errors(tmp_path, name, data, message):
    path = put(tmp_path / f"{name}-idx3-ubyte.gz", data)
    with pytest.raises(IDXError, match=in_message(path) + ".*" + message):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(FileNotFoundError, match=in_message(path)):
        read_idx(path)


def idx_like_bytes():
    """Byte strings near the format: random, random headers, valid files, mutated ones, gzip."""
    header = st.builds(
        lambda code, ndim, dims: (
            bytes([0, 0, code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
        ),
        st.sampled_from([8, 9, 11, 12, 13, 14, 7]),
        st.integers(0, 4),
        st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), max_size=4),
    )
    valid = hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=1, min_side=0)).map(
        idx_bytes
    )
    resized = st.builds(lambda b, k: b[:k] if k < 0 else b + bytes(k), valid, st.integers(-9, 9))
    flipped = st.builds(
        lambda b, i, v: b[: i % len(b)] + bytes([v]) + b[i % len(b) + 1 :],
        valid,
        st.integers(0, 40),
        st.integers(0, 255),
    )
    plain = (
        st.binary(max_size=80)
        | st.builds(bytes.__add__, header, st.binary(max_size=200))
        | valid
        | resized
        | flipped
    )
    return plain | plain.map(gzip.compress) | plain.map(lambda b: gzip.compress(b)[:-3])


@settings(FAST, max_examples=300)
@given(data=idx_like_bytes())
def test_any_bytes_read_or_raise_idx_error(tmp_path_factory, data):
    path = put(tmp_path_factory.mktemp("fuzz") / "f", data)
    try:
        out = read_idx(path)
    except IDXError as e:
        assert str(path) in str(e) and "Received:" in str(e)
        return
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    assert idx_bytes(out) == raw  # right shape, dtype and values, nothing ignored


# ---------------------------------------------------------------- folders of IDX files


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_folder_loads(tmp_path, gz, dtype):
    folder = make_folder(tmp_path / "mine", n=(6, 4), hw=(5, 3), gz=gz)
    ds = load_dataset(folder, dtype=dtype)
    assert ds.name == "mine" and ds.num_classes == 10 and ds.input_shape == (1, 5, 3)
    assert ds.x_train.shape == (6, 1, 5, 3) and ds.x_test.shape == (4, 1, 5, 3)
    assert ds.x_train.dtype == dtype and ds.y_train.dtype == np.int64
    suffix = ".gz" if gz else ""
    raw = read_idx(folder / f"train-images-idx3-ubyte{suffix}")
    np.testing.assert_array_equal(ds.x_train[:, 0], (raw / 255 - 0.5).astype(dtype))
    np.testing.assert_array_equal(ds.y_test, read_idx(folder / f"t10k-labels-idx1-ubyte{suffix}"))


def test_folder_count_mismatch(tmp_path):
    folder = make_folder(tmp_path / "d")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with pytest.raises(
        ValueError,
        match=in_message(
            "t10k-images-idx3-ubyte.gz has 3 images",
            "t10k-labels-idx1-ubyte.gz has 2 labels",
            "Received: 3 != 2",
        ),
    ):
        load_dataset(folder)


def test_folder_bad_images_and_labels(tmp_path):
    folder = make_folder(tmp_path / "d", gz=False)
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((5, 16), np.uint8))
    with pytest.raises(
        ValueError,
        match=r"train-images-idx3-ubyte: expected 3-D uint8.*"
        r"Received: shape=\(5, 16\)",
    ):
        load_dataset(folder)
    folder = make_folder(tmp_path / "e", labels=np.array([1, 2, 10], np.uint8), n=(3, 3))
    with pytest.raises(
        ValueError,
        match=r"train-labels-idx1-ubyte.gz: expected labels in 0..9.*"
        r"Received: min=1, max=10",
    ):
        load_dataset(folder)
    folder = make_folder(tmp_path / "f")
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"sizes differ.*Received: \(4, 4\) != \(4, 5\)"):
        load_dataset(folder)


def test_folder_missing_file(tmp_path):
    folder = make_folder(tmp_path / "d")
    os.remove(folder / "train-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match=in_message(folder, "train-labels-idx1-ubyte")):
        load_dataset(folder)


def test_unknown_name_or_missing_folder(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ValueError, match=in_message("digits", f"Received: dataset='{missing}'")):
        load_dataset(missing)
    with pytest.raises(ValueError, match=r"Received: dataset='cifar'"):
        load_dataset("cifar")


@pytest.mark.parametrize("dtype", ["float16", "int8", None, "bogus", np.int32])
def test_bad_dtype(dtype):
    with pytest.raises(ValueError, match=in_message(f"Received: dtype={dtype!r}")):
        load_dataset("digits", dtype=dtype)


def test_mnist_env(tmp_path, monkeypatch):
    monkeypatch.delenv("SKYLARK_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"pass that folder.*SKYLARK_MNIST_DIR unset"):
        load_dataset("mnist")
    monkeypatch.setenv("SKYLARK_MNIST_DIR", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=in_message(f"SKYLARK_MNIST_DIR='{tmp_path}")):
        load_dataset("mnist")
    monkeypatch.setenv("SKYLARK_MNIST_DIR", str(make_folder(tmp_path / "m")))
    ds = load_dataset("mnist")
    assert ds.name == "mnist" and ds.x_train.shape == (5, 1, 4, 4)


def test_fashion_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_module, "FASHION_MNIST_DIR", str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


# ---------------------------------------------------------------- bundled datasets


def test_digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ds = load_dataset("digits")
    assert DATASETS == ("digits", "fashion-mnist", "mnist", "cifar-10")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == -0.5 and ds.x_train.max() == 0.5 and ds.num_classes == 10
    np.testing.assert_array_equal(ds.y_test, sklearn_datasets.load_digits().target[-360:])
    again = load_dataset("digits", dtype="float64")
    assert again.x_test.dtype == np.float64
    np.testing.assert_array_equal(again.x_train, ds.x_train)  # k/16 - 1/2 is exact in both
    np.testing.assert_array_equal(again.y_train, ds.y_train)


def test_digits_without_sklearn(monkeypatch):
    """The digits are bundled (skylark/data/digits.npz): a core-only install has them."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)


def test_import_is_light():
    heavy = "{'sklearn', 'torch', 'tensorflow', 'jax', 'keras'}"
    code = f"import sys, skylark.data; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fashion_mnist():
    if not os.path.isdir(datasets_module.FASHION_MNIST_DIR):
        pytest.skip(
            f"{datasets_module.FASHION_MNIST_DIR} missing: apt-get install dataset-fashion-mnist"
        )
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert ds.x_train.min() == -0.5 and ds.x_train.max() == 0.5
    assert (np.bincount(ds.y_train) == 6000).all() and (np.bincount(ds.y_test) == 1000).all()


# ---------------------------------------------------------------- batches


@settings(FAST, max_examples=100)
@given(
    n=st.integers(0, 300),
    batch_size=st.integers(1, 64),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 50),
)
def test_batches_cover_every_index_once(n, batch_size, seed, epoch):
    out = batches(n, batch_size, seed, epoch)
    assert len(out) == -(-n // batch_size)
    assert all(len(b) == batch_size for b in out[:-1])
    joined = np.concatenate(out) if out else np.array([], np.int64)
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


def test_batches_deterministic():
    a, b, c = batches(100, 32, 7, 0), batches(100, 32, 7, 0), batches(100, 32, 7, 1)
    assert [len(x) for x in a] == [32, 32, 32, 4]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    assert not np.array_equal(np.concatenate(a), np.concatenate(batches(100, 32, 8, 0)))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batches_bad_batch_size(bad):
    with pytest.raises(ValueError, match=in_message(f"Received: batch_size={bad!r}")):
        batches(10, bad, 0, 0)
