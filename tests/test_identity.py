"""Identity: y is x itself and dx is dy itself (as torch's nn.Identity), dtypes kept, shape
errors named, and every framework on a map and on a flat input (where it must keep the flatten
order of the map before it)."""

from __future__ import annotations

import numpy as np
import pytest
from equivalence import equivalence_tests

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5)])
def test_returns_its_input_and_gradient_unchanged(shape, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    layer = sk.Identity()
    y = layer.forward(x)
    assert y is x and y.dtype == np.dtype(dtype)
    dy = np.ones(shape, dtype)
    assert layer.backward(dy) is dy
    assert layer.output_shape(shape[1:]) == shape[1:]
    assert check_gradients(layer_fb(layer, np.asarray(dy, np.float64)),
                           x.astype(np.float64), {})["input"] <= FD_RTOL


def test_errors_and_config():
    layer = sk.Identity()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 2)))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\). Received: dy with shape \(3, 2\)"):
        layer.backward(np.zeros((3, 2)))
    assert layer.config() == {} and repr(layer) == "Identity()"


IDENTITY_CASES = [
    pytest.param(lambda: sk.Sequential(sk.Conv2D(2, 3, 3, seed=3), sk.Identity()), (2, 6, 5),
                 4, id="conv_identity_on_map"),
    # after a flatten: the flat features keep the map's order (CHW in torch, HWC in Keras), so
    # the dense after it still needs its rows permuted (Kind.flat_source)
    pytest.param(lambda: sk.Sequential(sk.Conv2D(2, 3, 3, seed=4), sk.Flatten(), sk.Identity(),
                                       sk.Dense(3 * 4 * 3, 5, seed=5)), (2, 6, 5), 4,
                 id="conv_flatten_identity_dense"),
]

test_identity_case_reference_tensors_are_nonzero, test_identity_matches_every_framework = \
    equivalence_tests(IDENTITY_CASES)
