"""Dense: finite differences, argument errors, and equivalence with every framework."""

from __future__ import annotations

import numpy as np
import pytest
from equivalence import (
    equivalence_tests,
)

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n", [1, 4])
def test_dense_gradients_fd(n, bias):
    dense = sk.Dense(13, 5, bias=bias, dtype="float64", seed=0)
    x = rand((n, 13))
    errors = check_gradients(layer_fb(dense, rand((n, 5), seed=1)), x, dense.params())
    assert max(errors.values()) <= FD_RTOL, errors


def test_bad_arguments_name_the_received_value():
    with pytest.raises(ValueError, match="Received: in_features=0"):
        sk.Dense(0, 3)


@pytest.mark.parametrize(
    "layer, x, match",
    [
        (sk.Dense(5, 2), np.zeros((3, 4)), r"5 input features.*shape \(3, 4\)"),
        (sk.Dense(5, 2), np.zeros((3, 5), dtype=complex), "Received: dtype=complex128"),
    ],
)
def test_bad_input_names_the_received_shape(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(x)


# --- equivalence with every framework -----------------------------------------------------------
# The references take NCHW inputs, so the first Dense is fed by a Flatten: with C > 1 its weight
# rows are permuted between skylark's C,H,W and Keras' H,W,C order; the second, fed by a Dense,
# is a plain transpose. (Factory, input shape (C, H, W), batch.)
F, D = sk.Flatten, sk.Dense
DENSE_CASES = [
    pytest.param(lambda: sk.Sequential(F(), D(3 * 4 * 5, 6, bias=False, seed=31),
                                       D(6, 3, seed=32)), (3, 4, 5), 4,
                 id="flatten_dense_nobias_dense"),
]


test_dense_case_reference_tensors_are_nonzero, test_dense_matches_every_framework = \
    equivalence_tests(DENSE_CASES)
