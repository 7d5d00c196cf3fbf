"""Data: IDX and CIFAR-10 binary files, the dataset registry and deterministic batching."""

from .cifar import CIFARError, read_cifar10, read_cifar10_batch
from .datasets import DATASETS, Dataset, batches, check_dataset, load_dataset
from .idx import IDXError, read_idx, write_idx

__all__ = ["DATASETS", "CIFARError", "Dataset", "IDXError", "batches", "check_dataset",
           "load_dataset", "read_cifar10", "read_cifar10_batch", "read_idx", "write_idx"]
