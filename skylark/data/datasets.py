"""Datasets as NCHW arrays scaled to [-0.5, 0.5], and deterministic mini-batch shuffling."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .cifar import cifar10_kind, find_file, read_cifar10
from .digits import load_digits_arrays
from .idx import read_idx

__all__ = ["DATASETS", "FASHION_MNIST_DIR", "Dataset", "batches", "check_dataset",
           "load_dataset"]

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar-10")
# where Debian's package dataset-fashion-mnist installs the four .gz IDX files
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_ENV = "SKYLARK_MNIST_DIR"
CIFAR10_ENV = "SKYLARK_CIFAR10_DIR"
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DIGITS_TEST = 360  # digits split: the last 360 of scikit-learn's 1,797 images are the test set


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images ``x_train``, ``x_test``: (N, C, H, W) float in [-0.5, 0.5] (C = 1, or 3 for
    CIFAR-10's red, green, blue).
    Labels ``y_train``, ``y_test``: (N,) int64 in [0, num_classes).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, e.g. (1, 28, 28), or (3, 32, 32) for CIFAR-10."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"dtype={self.x_train.dtype}, num_classes={self.num_classes})"
        )


def load_dataset(name_or_dir: str | os.PathLike, dtype: str | np.dtype = "float32") -> Dataset:
    """Load ``"digits"`` (8x8, bundled), ``"fashion-mnist"`` (Debian's folder), ``"mnist"``
    (the folder in $SKYLARK_MNIST_DIR), ``"cifar-10"`` (the folder in $SKYLARK_CIFAR10_DIR), or a
    folder: CIFAR-10's binary version (cifar-10-batches-bin: data_batch_1.bin ... data_batch_5.bin,
    test_batch.bin; see skylark.data.cifar) or the four MNIST-format IDX files. Nothing is ever
    downloaded.

    Names win over a folder of the same name; pass ``./digits`` to mean the folder.
    """
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except (TypeError, ValueError):
        dt = None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"load_dataset: expected dtype float32 or float64, "
                         f"Received: dtype={dtype!r}")
    key = os.fspath(name_or_dir)
    if key == "digits":
        return _digits(dt)
    if key == "fashion-mnist":
        if not os.path.isdir(FASHION_MNIST_DIR):
            raise FileNotFoundError(
                f"dataset 'fashion-mnist' not found in {FASHION_MNIST_DIR}. Install it with "
                "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass the folder "
                "holding its four IDX files instead of the name."
            )
        return _idx_folder(FASHION_MNIST_DIR, "fashion-mnist", dt)
    if key == "mnist":
        return _idx_folder(_env_folder("mnist", MNIST_ENV, (
            "the folder holding the four MNIST IDX files "
            f"({', '.join(IDX_FILES)}, raw or .gz)")), "mnist", dt)
    if key == "cifar-10":
        return _cifar_folder(_env_folder("cifar-10", CIFAR10_ENV, (
            "the folder of CIFAR-10's binary version (cifar-10-batches-bin: data_batch_1.bin "
            "... data_batch_5.bin, test_batch.bin; skylark never downloads it)")), dt)
    if os.path.isdir(key):
        kind = cifar10_kind(key)
        if kind == "binary":
            return _cifar_folder(key, dt)
        try:
            return _idx_folder(key, os.path.basename(os.path.normpath(key)), dt)
        except FileNotFoundError:
            if kind is None:
                raise
            return _cifar_folder(key, dt)  # raises, saying which CIFAR-10 folder to pass instead
    raise ValueError(
        f"load_dataset: unknown dataset. Expected one of {DATASETS} or an existing folder of "
        f"MNIST-format IDX files or CIFAR-10 binary batches, Received: dataset={key!r}"
    )


def _env_folder(name: str, env: str, what: str) -> str:
    """The folder that environment variable `env` names for dataset `name`, or a
    FileNotFoundError saying what to pass instead."""
    folder = os.environ.get(env)
    if not folder or not os.path.isdir(folder):
        got = f"{env}={folder!r}" if folder else f"{env} unset"
        raise FileNotFoundError(f"dataset {name!r} needs {what}: pass that folder instead of "
                                f"{name!r}, or set {env} to it. Received: {got}")
    return folder


def _digits(dt: np.dtype) -> Dataset:
    images, y = load_digits_arrays()  # bundled: scikit-learn's arrays, no scikit-learn needed
    x = (images[:, None] / 16 - 0.5).astype(dt)  # exact: values are k/16 - 1/2
    n = len(y) - DIGITS_TEST
    return Dataset("digits", x[:n], y[:n], x[n:], y[n:], 10)


def _cifar_folder(folder: str, dt: np.dtype) -> Dataset:
    data = read_cifar10(folder)
    table = (np.arange(256) / 255 - 0.5).astype(dt)  # x/255 - 0.5, as for IDX images
    return Dataset("cifar-10", table[data.x_train], data.y_train, table[data.x_test],
                   data.y_test, 10)


def _find(folder: str, stem: str) -> str:
    """folder/stem or folder/stem.gz (skylark.data.cifar.find_file), else FileNotFoundError."""
    path = find_file(folder, stem)
    if path is not None:
        return path
    raise FileNotFoundError(f"{folder}: no {stem} or {stem}.gz in this folder.")


def _idx_folder(folder: str, name: str, dt: np.dtype) -> Dataset:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder of IDX files.")
    # x/255 - 0.5 through a 256-entry table: rounded once from float64, and no float64 copy of x
    table = (np.arange(256) / 255 - 0.5).astype(dt)
    arrays = []
    for split in ("train", "t10k"):
        images_path = _find(folder, f"{split}-images-idx3-ubyte")
        labels_path = _find(folder, f"{split}-labels-idx1-ubyte")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{images_path}: expected 3-D uint8 images (N, H, W), "
                f"Received: shape={images.shape}, dtype={images.dtype}"
            )
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{labels_path}: expected 1-D integer labels (N,), "
                f"Received: shape={labels.shape}, dtype={labels.dtype}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"image and label counts differ: {images_path} has {len(images)} images, "
                f"{labels_path} has {len(labels)} labels. Received: {len(images)} != {len(labels)}"
            )
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(
                f"{labels_path}: expected labels in 0..9, "
                f"Received: min={labels.min()}, max={labels.max()}"
            )
        arrays += [table[images][:, None], labels.astype(np.int64), images_path]
    x_train, y_train, train_path, x_test, y_test, test_path = arrays
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"train and test image sizes differ: {train_path} has {x_train.shape[2:]}, {test_path} "
            f"has {x_test.shape[2:]}. Received: {x_train.shape[2:]} != {x_test.shape[2:]}"
        )
    return Dataset(name, x_train, y_train, x_test, y_test, 10)


def check_dataset(data: Dataset) -> Dataset:
    """`data` if it can be trained and evaluated on; else ValueError naming what it lacks:
    training images, test images, or pixels (0 images would train nothing, yet report a loss of
    nan and a checkpoint labelled as trained)."""
    for split, x in (("training", data.x_train), ("test", data.x_test)):
        if len(x) == 0:
            raise ValueError(f"dataset {data.name!r} has no {split} images. "
                             f"Received: {split} images of shape {x.shape}")
    if data.x_train[0].size == 0:
        raise ValueError(f"dataset {data.name!r} has images without pixels. "
                         f"Received: image shape {data.input_shape}")
    return data


def batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled index batches for one epoch: a permutation of range(n) from
    ``np.random.default_rng([seed, epoch])`` cut into (batch_size,) int64 arrays, last one partial.
    """
    for arg, value, low in (
        ("n", n, 0),
        ("batch_size", batch_size, 1),
        ("seed", seed, 0),
        ("epoch", epoch, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"batches: expected an int {arg} >= {low}, Received: {arg}={value!r}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
