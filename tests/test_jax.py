"""The raw JAX reference (reference/runners/jax_ref.py): what the shared equivalence tests do
not show on their own. Max-pool ties against hand-written gradients (jax's select-and-scatter on the
undilated path, the running maximum on the dilated one), float64 really computed in float64,
and torch's SGD momentum in lockstep with numpy."""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk
from reference.spec import describe

pytestmark = pytest.mark.jax

# A constant map ties every window. Each window sends its gradient (1) to its FIRST maximum in
# row-major order, i.e. its top-left tap; overlapping windows add up.
TIE_CASES = [
    # 2x2 stride 2 on 4x4: four windows, their top-left pixels
    ((2, 2), (2, 2), (1, 1), [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]),
    # 2x2 stride 1 on 4x4: nine windows whose top-left pixels are rows/columns 0..2
    ((2, 2), (1, 1), (1, 1), [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]),
    # 2x2 dilation 2 stride 1 on 4x4: taps (i, j), (i, j+2), ...: top-left (i, j), i, j in 0..1
    ((2, 2), (1, 1), (2, 2), [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
]


@pytest.mark.parametrize("kernel, stride, dilation, expected", TIE_CASES,
                         ids=["k2s2", "k2s1-overlap", "k2s1-dilated"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_max_pool_tie_goes_to_the_first_maximum(kernel, stride, dilation, expected, dtype,
                                                reference_runner):
    """Through the whole runner (Flatten, Dense after the pool): d.out.0 of the cotangent pass
    is the pool's output gradient, d.input its input gradient; ties must route as expected."""
    pool = sk.MaxPool2D(kernel, stride, dilation=dilation)
    out = pool.output_shape((1, 4, 4))
    model = sk.Sequential(pool, sk.Flatten(), sk.Dense(int(np.prod(out)), 2, seed=1))
    runner = reference_runner("jax")
    runner.setup(describe(model), model.state(), dtype, (1, 4, 4))
    x = np.full((1, 1, 4, 4), 0.25, dtype)
    got = runner.trace(x, [0], np.ones((1, 2), dtype))
    d_pool = got["cot/d.out.0"]
    assert np.all(d_pool != 0)  # every window has a gradient to route
    # each window's own gradient differs, so weight the expected pattern window by window
    windows = np.zeros((4, 4), dtype)
    sh, sw = stride
    for i in range(d_pool.shape[2]):
        for j in range(d_pool.shape[3]):
            windows[i * sh, j * sw] += d_pool[0, 0, i, j]  # the window's top-left tap
    assert (windows != 0).astype(int).tolist() == expected
    np.testing.assert_array_equal(got["cot/d.input"][0, 0], windows)


def test_float64_is_computed_in_float64(reference_runner):
    """jax computes float64 in float32 unless x64 is on: the reference turns it on, so a
    float64 trace is float64 and matches numpy to 1e-13 (float32 would be ~1e-8 off)."""
    model = sk.skylark_cnn((1, 8, 8), seed=0, dtype="float64")
    runner = reference_runner("jax")
    runner.setup(describe(model), model.state(), "float64", (1, 8, 8))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 1, 8, 8))
    got = runner.trace(x, [1, 2, 3], np.ones((3, 10)))
    assert all(v.dtype == np.float64 for v in got.values())
    np.testing.assert_allclose(got["out.3"], model.forward(x), rtol=0, atol=1e-13)


def test_sgd_momentum_is_torchs_rule_in_lockstep_with_numpy(reference_runner):
    """Five float64 steps with momentum 0.9, then the weights: within 1e-13 of numpy's (the
    Keras form m = mu*m - lr*g would round differently; a momentum ignored is off by ~1e-2)."""
    from reference.runners.numpy_ref import NumpyRunner

    model = sk.skylark_cnn((1, 8, 8), seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    jx, ref = reference_runner("jax"), NumpyRunner()
    for r in (jx, ref):
        r.setup(describe(model), model.state(), "float64", (1, 8, 8))
        r.train_setup(lr=0.3, momentum=0.9)
    for _ in range(5):
        x, y = rng.uniform(-0.5, 0.5, (4, 1, 8, 8)), rng.integers(0, 10, 4)
        assert abs(jx.train_step(x, y) - ref.train_step(x, y)) <= 1e-13
    got, want = jx.get_params(), ref.get_params()
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-13, err_msg=k)
