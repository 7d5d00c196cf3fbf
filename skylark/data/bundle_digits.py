"""Write skylark/data/digits.npz, the 8x8 digits bundled with skylark, from scikit-learn's copy.

    python -m skylark.data.bundle_digits   # needs scikit-learn; run once, commit the .npz

The arrays are scikit-learn's `load_digits()` (1,797 images of 8x8 pixels, each an integer
0..16, and their labels 0..9) stored as uint8, which holds them exactly, in a compressed .npz
(no pickles). tests/test_digits.py checks that the bundle equals scikit-learn's arrays where
scikit-learn is installed. Source and licence: skylark/data/DIGITS_LICENSE.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "digits.npz"


def main() -> int:
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = d.images, d.target
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    # uint8 is exact: every pixel is an integer count 0..16, every label 0..9
    assert np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 16
    np.savez_compressed(OUT, images=images.astype(np.uint8), labels=labels.astype(np.uint8))
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
