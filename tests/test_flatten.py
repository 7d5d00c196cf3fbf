"""Flatten: C, H, W order (the flatten-order trap), finite differences, errors, and equivalence
with every framework (Keras/TF flatten H, W, C: the reference must permute)."""

from __future__ import annotations

import numpy as np
import pytest
from equivalence import (
    equivalence_tests,
)

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb


def test_flatten_is_chw_order():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).astype(float)
    flat = sk.Flatten().forward(x)
    c, h, w = 1, 2, 3
    assert flat[1, c * 20 + h * 5 + w] == x[1, c, h, w]


def test_flatten_gradients_fd():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    layer = sk.Flatten()
    cot = np.random.default_rng(1).standard_normal(layer.forward(x).shape)
    errors = check_gradients(layer_fb(layer, cot), x, {})
    assert errors["input"] <= FD_RTOL, errors


def test_flatten_rejects_a_1d_input():
    with pytest.raises(ValueError, match=r"at least a 2-D input. Received: shape \(4,\)"):
        sk.Flatten().forward(np.zeros(4))


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        sk.Flatten().backward(np.zeros((1, 3)))


# --- equivalence with every framework -----------------------------------------------------------
# (layer or Sequential factory, input shape (C, H, W), batch); the helper adds the Dense. C > 1
# and H != W, so a wrong flatten order or a plain-transposed Dense weight shows.
FLATTEN_CASES = [
    pytest.param(lambda: sk.Flatten(), (3, 4, 5), 4, id="flatten_c3_4x5"),
]


test_flatten_case_reference_tensors_are_nonzero, test_flatten_matches_every_framework = \
    equivalence_tests(FLATTEN_CASES)
