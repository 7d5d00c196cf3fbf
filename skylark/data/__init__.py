"""Data: IDX files, the dataset registry and deterministic batching."""

from .datasets import DATASETS, Dataset, batches, check_dataset, load_dataset
from .idx import IDXError, read_idx, write_idx

__all__ = ["DATASETS", "Dataset", "IDXError", "batches", "check_dataset", "load_dataset",
           "read_idx", "write_idx"]
