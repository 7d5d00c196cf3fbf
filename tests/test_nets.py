"""Whole networks (several layers interacting, not one under test) agree with every framework,
tensor by tensor: layer outputs, loss, and both backward passes (loss, random cotangent), in
float64 and float32, on random and tie-heavy inputs. Single-layer equivalence lives in each
layer's own file (test_conv, test_pool, test_dense, test_activation, test_flatten)."""

from __future__ import annotations

import pytest
from equivalence import (
    equivalence_tests,
)

import skylark as sk

C, P, R, F, D = sk.Conv2D, sk.MaxPool2D, sk.ReLU, sk.Flatten, sk.Dense

# (Sequential factory, input shape (C, H, W), batch); the helper ends a net that outputs a map
# with Flatten + Dense(.., 5).
NETS = [
    pytest.param(lambda: sk.skylark_cnn(), (1, 28, 28), 4, id="skylark_cnn"),
    pytest.param(lambda: sk.Sequential(C(3, 4, 1, seed=1), R(), P(2)), (3, 6, 7), 4,
                 id="k1_c3_relu_pool2"),
    pytest.param(lambda: sk.Sequential(C(3, 5, 3, 2, "same", bias=False, seed=3), R(), P(3, 1)),
                 (3, 9, 10), 4, id="k3_s2_same_nobias_relu_pool3s1"),
    pytest.param(lambda: sk.Sequential(C(1, 4, 3, 1, "same", seed=8), R(), C(4, 4, 3, 2, seed=9),
                                       P(2)), (1, 12, 12), 1, id="two_convs_batch1"),
    pytest.param(lambda: sk.Sequential(C(2, 3, (3, 2), seed=10), F(), R(),
                                       D(3 * 5 * 6, 7, seed=11), R(), D(7, 4, seed=12)),
                 (2, 7, 7), 4, id="flatten_relu_dense_dense"),
    pytest.param(lambda: sk.Sequential(P(2, 1), C(1, 2, 3, 1, (1, 2), seed=13)), (1, 7, 6), 4,
                 id="pool_first_int_pad_k2"),
]


test_net_case_reference_tensors_are_nonzero, test_net_matches_every_framework = \
    equivalence_tests(NETS)
