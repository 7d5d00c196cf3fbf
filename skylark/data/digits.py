"""The 8x8 digits bundled with skylark: 1,797 images, no download and no scikit-learn needed.

`digits.npz` holds scikit-learn's `load_digits()` arrays as uint8 (written by
skylark/data/bundle_digits.py); DIGITS_LICENSE.md beside it gives the source (the UCI optdigits test
set) and its licence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIGITS_NPZ = Path(__file__).with_name("digits.npz")


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) uint8 with pixels 0..16, labels (1797,) int64 0..9)."""
    if not DIGITS_NPZ.is_file():
        raise FileNotFoundError(f"the bundled digits are missing: {DIGITS_NPZ} (a broken install? "
                                "reinstall skylark)")
    with np.load(DIGITS_NPZ, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    if images.shape != (1797, 8, 8) or labels.shape != (1797,):
        raise ValueError(f"{DIGITS_NPZ} is damaged. Received: images {images.shape}, labels "
                         f"{labels.shape}")
    return images, labels
