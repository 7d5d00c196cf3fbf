"""Dropout: the identity in eval, y = x * mask / (1 - p) in training (p = 0 and p = 1 too), the
one-shot `use_mask` and its shape check, `reseed` reproducibility, finite differences with a
fixed mask, argument errors, equivalence with every framework in both modes (the harness hands
every framework the same keep-masks), and `dropout_masks` drawing exactly what `fit` draws."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from equivalence import (
    DTYPES,
    INPUTS,
    equivalence_tests,
    make_case,
    minimal_net,
)

import skylark as sk
from reference.inputs import all_zero, dropout_masks
from reference.spec import describe
from skylark.data import Dataset
from skylark.train import fit

from gradcheck import FD_RTOL, check_gradients


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def keep_mask(shape, p, seed=0):
    return np.random.default_rng(seed).random(shape) >= p


# --- the two modes ----------------------------------------------------------------------------


def test_eval_is_the_identity_and_draws_nothing():
    drop, fresh = sk.Dropout(0.5, seed=3), sk.Dropout(0.5, seed=3)
    drop.training = False
    x, dy = rand((3, 4, 5)), rand((3, 4, 5), seed=1)
    np.testing.assert_array_equal(drop.forward(x), x)
    np.testing.assert_array_equal(drop.backward(dy), dy)
    # eval consumed no randomness: the next training mask is a fresh layer's first one
    drop.training = True
    np.testing.assert_array_equal(drop.forward(np.ones((50,))), fresh.forward(np.ones((50,))))


@pytest.mark.parametrize("p", [0.25, 0.5, 0.9])
def test_training_scales_the_kept_elements_by_one_over_keep(p):
    """torch's order, bit for bit: the mask is scaled first (mask / (1 - p)), then multiplies
    x; the gradient goes through the same scaled mask."""
    drop = sk.Dropout(p)
    x, dy, mask = rand((4, 3, 2, 5)), rand((4, 3, 2, 5), seed=1), keep_mask((4, 3, 2, 5), p)
    assert 0 < mask.mean() < 1
    drop.use_mask(mask)
    np.testing.assert_array_equal(drop.forward(x), x * (mask / (1 - p)))
    np.testing.assert_array_equal(drop.backward(dy), dy * (mask / (1 - p)))
    x32 = x.astype(np.float32)  # float32 stays float32, the scale too
    drop.use_mask(mask)
    y32 = drop.forward(x32)
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, x32 * (mask.astype(np.float32) / np.float32(1 - p)))


def test_p_zero_is_the_identity_in_training():
    drop = sk.Dropout(0.0, seed=1)
    x = rand((2, 3, 4))
    np.testing.assert_array_equal(drop.forward(x), x)
    np.testing.assert_array_equal(drop.backward(x), x)


def test_p_one_zeroes_everything_like_torch():
    """keep = 0: torch returns zeros (not nan from 0/0), whatever the mask says."""
    drop = sk.Dropout(1.0, seed=1)
    x = rand((2, 3, 4))
    for given in (None, np.ones(x.shape, bool)):
        if given is not None:
            drop.use_mask(given)
        y = drop.forward(x)
        assert y.shape == x.shape and not y.any() and np.isfinite(y).all()
        assert not drop.backward(x).any()


def test_drawn_masks_keep_one_minus_p_of_the_elements():
    drop, p = sk.Dropout(0.3, seed=0), 0.3
    x = np.ones(100_000)
    y = drop.forward(x)
    assert set(np.unique(y)) == {0.0, 1 / (1 - p)}
    # binomial: std of the kept fraction sqrt(p (1 - p) / n) = 0.0014; 6 std is 0.009
    assert abs((y != 0).mean() - (1 - p)) < 0.009, (y != 0).mean()


# --- use_mask and reseed ----------------------------------------------------------------------


def test_use_mask_is_for_the_next_forward_only():
    drop, fresh = sk.Dropout(0.5, seed=7), sk.Dropout(0.5, seed=7)
    x, given = np.ones((20, 10)), keep_mask((20, 10), 0.5, seed=99)
    drop.use_mask(given)
    np.testing.assert_array_equal(drop.forward(x) != 0, given)
    second = drop.forward(x) != 0
    assert not np.array_equal(second, given)
    # the given mask took nothing from the generator: the draw is a fresh layer's first
    np.testing.assert_array_equal(second, fresh.forward(x) != 0)
    # an eval forward uses up a given mask as well (it is for one forward, whatever the mode)
    drop.use_mask(given)
    drop.training = False
    drop.forward(x)
    drop.training = True
    assert not np.array_equal(drop.forward(x) != 0, given)


def test_use_mask_of_the_wrong_shape_names_both_shapes():
    drop = sk.Dropout(0.5)
    drop.use_mask(np.ones((3, 2), bool))
    with pytest.raises(ValueError, match=r"Dropout mask must have the input's shape \(2, 3\). "
                                         r"Received: mask with shape \(3, 2\)"):
        drop.forward(np.ones((2, 3)))


def test_reseed_makes_the_masks_reproducible():
    a, b = sk.Dropout(0.4, seed=1), sk.Dropout(0.4, seed=2)
    x = np.ones((6, 7))
    assert not np.array_equal(a.forward(x), b.forward(x))  # their own seeds differ
    a.reseed((5, 3, 1))
    b.reseed((5, 3, 1))
    ya = a.forward(x)
    np.testing.assert_array_equal(ya, b.forward(x))
    np.testing.assert_array_equal(ya != 0, np.random.default_rng((5, 3, 1)).random(x.shape) >= 0.4)
    a.reseed((5, 3, 2))  # another key (layer index), another mask
    assert not np.array_equal(a.forward(x), ya)


def test_gradients_fd_with_a_fixed_mask():
    drop, mask = sk.Dropout(0.3), keep_mask((3, 2, 4, 5), 0.3, seed=4)
    cot = rand(mask.shape, seed=5)

    def fb(x):
        drop.use_mask(mask)  # the same mask for every evaluation
        y = drop.forward(x)
        return float(np.sum(cot * y)), drop.backward(cot), {}

    errors = check_gradients(fb, rand(mask.shape), {})
    assert errors["input"] <= FD_RTOL, errors


@pytest.mark.parametrize("p", [-0.1, 1.5, True, "0.5", None, float("nan")])
def test_bad_p_names_the_received_value(p):
    with pytest.raises(ValueError, match=rf"p must be a probability in \[0, 1\]. "
                                         rf"Received: p={p!r}"):
        sk.Dropout(p)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        sk.Dropout(0.5).backward(np.zeros((2, 3)))


# --- the harness's masks and what fit draws ---------------------------------------------------

SPEC_MODEL = sk.Sequential(sk.Dropout(0.3), sk.Flatten(), sk.Dense(2 * 3 * 4, 5, seed=1),
                           sk.Dropout(0.6), sk.Dense(5, 3, seed=2))


def test_dropout_masks_are_deterministic_per_seed_step_and_layer():
    spec = describe(SPEC_MODEL)
    masks = dropout_masks(spec, (2, 3, 4), 5, seed=4, step=2)
    assert sorted(masks) == [0, 3]
    assert masks[0].shape == (5, 2, 3, 4) and masks[3].shape == (5, 5)
    assert all(m.dtype == bool and 0 < m.mean() < 1 for m in masks.values())
    again = dropout_masks(spec, (2, 3, 4), 5, seed=4, step=2)
    assert all(np.array_equal(masks[i], again[i]) for i in masks)
    for other in (dict(seed=5, step=2), dict(seed=4, step=3)):
        changed = dropout_masks(spec, (2, 3, 4), 5, **other)
        assert not np.array_equal(changed[0], masks[0]), other
    # each is what the layer draws after reseed((seed, step, layer index))
    for i, mask in masks.items():
        layer = sk.Dropout(SPEC_MODEL[i].p)
        layer.reseed((4, 2, i))
        np.testing.assert_array_equal(layer.forward(np.ones(mask.shape)) != 0, mask)


def test_dropout_masks_are_what_fit_draws(monkeypatch):
    """fit reseeds each dropout layer with (seed, global step, layer index) before every step:
    recording the masks its layers apply shows the same masks dropout_masks hands the
    frameworks, step after step, across epochs and for the short last batch."""
    r = np.random.default_rng(0)
    data = Dataset("tiny", r.uniform(-0.5, 0.5, (10, 2, 3, 4)), r.integers(0, 3, 10),
                   r.uniform(-0.5, 0.5, (4, 2, 3, 4)), r.integers(0, 3, 4), 3)
    model = sk.Sequential(*(type(layer)(**layer.config(), **(
        {"dtype": "float64", "seed": i} if layer.param_names else {}))
        for i, layer in enumerate(SPEC_MODEL)))
    seen = []
    forward = sk.Dropout.forward

    def recording(self, x):
        y = forward(self, x)
        if self.training:
            seen.append((model.layers.index(self), self._scale != 0))
        return y

    monkeypatch.setattr(sk.Dropout, "forward", recording)
    fit(model, data, epochs=2, batch_size=4, lr=0.1, seed=6, progress=False, log=lambda m: None)
    spec = describe(model)
    sizes = [4, 4, 2] * 2  # 10 samples in batches of 4, two epochs
    assert [i for i, _ in seen] == [0, 3] * len(sizes)
    for step, n in enumerate(sizes):
        want = dropout_masks(spec, (2, 3, 4), n, seed=6, step=step)
        for j, i in enumerate((0, 3)):
            np.testing.assert_array_equal(seen[2 * step + j][1], want[i],
                                          err_msg=f"step {step}, layer {i}")


# --- equivalence with every framework ---------------------------------------------------------
# (factory, input shape (C, H, W), batch); the helper adds Flatten + Dense. On a map the keep-mask
# is converted NCHW -> NHWC like an activation; after a Flatten it is flat, in skylark's C,H,W
# order, and must be permuted to Keras' H,W,C order.
DROPOUT_CASES = [
    pytest.param(lambda: sk.Dropout(0.3), (3, 5, 6), 4, id="dropout_map"),
    pytest.param(lambda: sk.Sequential(sk.Flatten(), sk.Dropout(0.4)), (3, 4, 5), 4,
                 id="flatten_dropout"),
]
VARIANTS = list(itertools.product(DTYPES, INPUTS))
MODES = [pytest.param(True, id="train"), pytest.param(False, id="eval")]


@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("dtype, kind", VARIANTS)
@pytest.mark.parametrize("make, shape, batch", DROPOUT_CASES)
def test_dropout_case_reference_tensors_are_nonzero(make, shape, batch, dtype, kind, training):
    """Zeros match zeros and prove nothing; in training the masks drop some and keep some."""
    case = make_case(minimal_net(make(), shape), shape, dtype, kind, batch, training=training)
    assert all_zero(case.ref) == []
    assert (len(case.masks) == 1) == training
    assert all(0 < m.mean() < 1 for m in case.masks.values())


# the richer nonzero test above is this family's own; the framework test is the shared one
_, test_dropout_matches_every_framework = equivalence_tests(DROPOUT_CASES, modes=True)
