"""StochasticDepth: torchvision's rule (one keep decision per sample, mode "row", or per batch,
"batch"; the noise divided by 1 - p, then multiplied into x) against a loop oracle and
torchvision.ops.stochastic_depth bit for bit, the identity in eval and at p = 0, zeros at
p = 1, the one-shot `use_mask`, `reseed` and what `fit` draws, argument errors, stock Keras'
Dropout(noise_shape=(None, 1, 1, 1)) as the same layer, and every framework in both modes
(the harness hands every framework the same keep-masks)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS
from equivalence import (
    DTYPES,
    assert_layer_matches,
    equivalence_tests,
    make_case,
    minimal_net,
)
from oracle_import import stochastic_depth

import skylark as sk
from reference.inputs import all_zero, dropout_masks
from reference.spec import describe
from skylark.data import Dataset
from skylark.train import fit

from gradcheck import FD_RTOL, check_gradients, rel_error

# x * (1 / (1 - p)) (skylark: the noise scaled first) against x / (1 - p) (the oracle): one
# rounding apart, at most 1 ulp of the float64 result
ORACLE_RTOL = 2.3e-16


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def both_kinds(n, seed=0):
    """A keep-mask of n samples with at least one kept and one dropped."""
    keep = np.random.default_rng(seed).random(n) >= 0.5
    keep[:2] = True, False
    return keep


@pytest.mark.parametrize("shape", [(5, 3, 4, 2), (5, 7)], ids=["map", "flat"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_row_mode_drops_whole_samples_like_the_oracle(p, shape):
    layer = sk.StochasticDepth(p, "row")
    x, dy = rand(shape), rand(shape, seed=1)
    keep = both_kinds(shape[0])
    mask = keep.reshape(-1, *(1,) * (len(shape) - 1))
    assert layer.noise_shape(shape) == mask.shape
    layer.use_mask(mask)
    y = layer.forward(x)
    assert rel_error(y, stochastic_depth(x, keep, p)) <= ORACLE_RTOL
    assert rel_error(layer.backward(dy), stochastic_depth(dy, keep, p)) <= ORACLE_RTOL
    # torchvision's order, bit for bit: the noise scaled first, then times x
    np.testing.assert_array_equal(y, x * (mask / (1 - p)))
    x32 = x.astype(np.float32)
    layer.use_mask(mask)
    y32 = layer.forward(x32)
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, x32 * (mask.astype(np.float32) / np.float32(1 - p)))


@pytest.mark.parametrize("kept", [True, False])
def test_batch_mode_keeps_or_drops_the_whole_batch(kept):
    layer, x = sk.StochasticDepth(0.25, "batch"), rand((4, 2, 3, 3))
    assert layer.noise_shape(x.shape) == (1, 1, 1, 1)
    layer.use_mask(np.full((1, 1, 1, 1), kept))
    y = layer.forward(x)
    assert rel_error(y, stochastic_depth(x, [kept], 0.25)) <= ORACLE_RTOL
    assert (y == 0).all() != kept


def test_eval_and_p_zero_are_the_identity_and_p_one_zeroes():
    x = rand((3, 2, 2, 2))
    layer = sk.StochasticDepth(0.5)
    layer.training = False
    assert layer.forward(x) is x and layer.backward(x) is x
    zero = sk.StochasticDepth(0.0)
    assert zero.forward(x) is x  # torchvision returns its input at p = 0
    one = sk.StochasticDepth(1.0, seed=1)
    y = one.forward(x)
    assert not y.any() and np.isfinite(y).all() and not one.backward(x).any()


def test_gradients_fd_with_a_fixed_mask():
    layer, shape = sk.StochasticDepth(0.3), (4, 2, 3, 3)
    mask, cot = both_kinds(4).reshape(4, 1, 1, 1), rand(shape, seed=5)

    def fb(x):
        layer.use_mask(mask)  # the same mask for every evaluation
        y = layer.forward(x)
        return float(np.sum(cot * y)), layer.backward(cot), {}

    assert check_gradients(fb, rand(shape), {})["input"] <= FD_RTOL


def torchvision_stochastic_depth():
    """torchvision.ops.stochastic_depth, imported through reference.importers'
    torchvision_compat (a torchvision wheel beside a CPU torch); skipped, saying why, where
    torchvision is not installed."""
    from reference.importers.torchvision_compat import load

    try:
        return load().ops.stochastic_depth
    except ImportError as e:
        pytest.skip(f"torchvision is not installed: {e}")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["row", "batch"])
def test_matches_torchvision_bit_for_bit(mode, dtype):
    """torchvision draws its own noise: the keep decisions are read back from its output
    (x has no zero), then skylark with that mask gives the same output and gradient, exactly."""
    torch = pytest.importorskip("torch")
    stochastic_depth_tv = torchvision_stochastic_depth()
    torch.manual_seed(3)
    x, cot = rand((8, 3, 4, 5)).astype(dtype), rand((8, 3, 4, 5), seed=1).astype(dtype)
    layer = sk.StochasticDepth(0.4, mode)
    for _ in range(5):  # until torchvision keeps some samples and drops others
        xt = torch.tensor(x, requires_grad=True)
        yt = stochastic_depth_tv(xt, 0.4, mode, training=True)
        kept = (yt != 0).flatten(1).any(1).numpy()
        if mode == "batch" or 0 < kept.mean() < 1:
            break
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    mask = kept.reshape(-1, 1, 1, 1)[: layer.noise_shape(x.shape)[0]]
    layer.use_mask(mask)
    np.testing.assert_array_equal(layer.forward(x), yt.detach().numpy())
    np.testing.assert_array_equal(layer.backward(cot), dxt.numpy())


@pytest.mark.keras
def test_stock_keras_dropout_with_a_per_sample_noise_shape_is_this_layer():
    """Keras Applications' EfficientNet says stochastic depth as Dropout(p, noise_shape=(None,
    1, 1, 1)): each sample all zero or all x / (1 - p); skylark with that keep-mask agrees
    (float64: the division is exactly rounded either way)."""
    keras = pytest.importorskip("keras")
    x = 1 + rand((64, 2, 2, 3)) ** 2  # NHWC, no zero
    drop = keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), seed=1, dtype="float64")
    y = keras.ops.convert_to_numpy(drop(x, training=True))
    kept = (y != 0).reshape(64, -1).any(axis=1)
    assert ((y != 0).reshape(64, -1).all(axis=1) == kept).all()  # whole samples
    assert 0 < kept.mean() < 1
    layer = sk.StochasticDepth(0.5)
    layer.use_mask(kept.reshape(64, 1, 1, 1))
    np.testing.assert_allclose(layer.forward(x), y, rtol=1e-15, atol=0)


def test_drawn_noise_keeps_one_minus_p_of_the_samples():
    layer, p = sk.StochasticDepth(0.3, seed=0), 0.3
    y = layer.forward(np.ones((100_000, 1, 1, 2)))
    assert set(np.unique(y)) == {0.0, 1 / (1 - p)}
    assert (y[:, 0, 0, 0] == y[:, 0, 0, 1]).all()  # one decision per sample
    # binomial: std of the kept fraction sqrt(p (1 - p) / n) = 0.0014; 6 std is 0.009
    assert abs((y[:, 0, 0, 0] != 0).mean() - (1 - p)) < 0.009


def test_use_mask_is_for_one_forward_and_is_shape_checked():
    layer, fresh = sk.StochasticDepth(0.5, seed=7), sk.StochasticDepth(0.5, seed=7)
    x, given = np.ones((20, 1, 2, 2)), both_kinds(20, seed=9).reshape(20, 1, 1, 1)
    layer.use_mask(given)
    np.testing.assert_array_equal(layer.forward(x)[:, :1, :1, :1] != 0, given)
    # the given mask took nothing from the generator: the next draw is a fresh layer's first
    np.testing.assert_array_equal(layer.forward(x), fresh.forward(x))
    layer.use_mask(np.ones((20, 1, 2, 2), bool))  # dropout's shape, not the noise's
    with pytest.raises(ValueError, match=r"StochasticDepth mask must have the noise's shape "
                                         r"\(20, 1, 1, 1\). Received: mask with shape "
                                         r"\(20, 1, 2, 2\)"):
        layer.forward(x)


def test_reseed_and_dropout_masks_draw_the_same_noise():
    """dropout_masks gives a stochastic depth its noise's shape, drawn as the layer draws it
    after reseed((seed, step, layer index))."""
    model = sk.Sequential(sk.StochasticDepth(0.3), sk.Flatten(), sk.Dense(2 * 3 * 4, 5, seed=1),
                          sk.StochasticDepth(0.6, "batch"), sk.Dense(5, 3, seed=2))
    masks = dropout_masks(describe(model), (2, 3, 4), 50, seed=4, step=2)
    assert masks[0].shape == (50, 1, 1, 1) and masks[3].shape == (1, 1)
    for i, mask in masks.items():
        layer = sk.StochasticDepth(model[i].p, model[i].mode)
        layer.reseed((4, 2, i))
        np.testing.assert_array_equal(layer.forward(np.ones(mask.shape)) != 0, mask)


def test_fit_reseeds_it_like_dropout(monkeypatch):
    """fit reseeds every stochastic depth with (seed, global step, layer index): the masks its
    layers apply are dropout_masks' for every step and batch size."""
    r = np.random.default_rng(0)
    data = Dataset("tiny", r.uniform(-0.5, 0.5, (10, 2, 3, 4)), r.integers(0, 3, 10),
                   r.uniform(-0.5, 0.5, (4, 2, 3, 4)), r.integers(0, 3, 4), 3)
    model = sk.Sequential(sk.StochasticDepth(0.5), sk.Flatten(),
                          sk.Dense(24, 3, seed=1, dtype="float64"))
    seen, forward = [], sk.StochasticDepth.forward

    def recording(self, x):
        y = forward(self, x)
        if self.training:
            seen.append(self._scale != 0)
        return y

    monkeypatch.setattr(sk.StochasticDepth, "forward", recording)
    fit(model, data, epochs=2, batch_size=4, lr=0.1, seed=6, progress=False, log=lambda m: None)
    sizes = [4, 4, 2] * 2
    assert len(seen) == len(sizes)
    for step, n in enumerate(sizes):
        want = dropout_masks(describe(model), (2, 3, 4), n, seed=6, step=step)[0]
        np.testing.assert_array_equal(seen[step], want, err_msg=f"step {step}")


@pytest.mark.parametrize("p", [-0.1, 1.5, True, "0.5", None, float("nan")])
def test_bad_p_names_the_received_value(p):
    with pytest.raises(ValueError, match=rf"p must be a probability in \[0, 1\]. "
                                         rf"Received: p={p!r}"):
        sk.StochasticDepth(p)


def test_bad_mode_config_and_errors():
    with pytest.raises(ValueError, match=r"mode must be one of \('row', 'batch'\). "
                                         r"Received: mode='sample'"):
        sk.StochasticDepth(0.2, "sample")
    layer = sk.StochasticDepth(0.2, "batch")
    assert layer.config() == {"p": 0.2, "mode": "batch"}
    assert repr(layer) == "StochasticDepth(p=0.2, mode='batch')"
    assert sk.StochasticDepth(0.1).config() == {"p": 0.1, "mode": "row"}  # torchvision's usual
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((2, 3)))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\). Received: dy with shape \(3, 2\)"):
        layer.backward(np.zeros((3, 2)))


# --- equivalence with every framework, both modes ---------------------------------------------
# (factory, input shape (C, H, W), batch 8 so that the row masks keep some samples and drop
# others); the helper adds Flatten + Dense
C = sk.Conv2D
SD_CASES = [
    pytest.param(lambda: sk.Sequential(C(2, 3, 3, seed=3), sk.StochasticDepth(0.3)), (2, 6, 5),
                 8, id="conv_stochastic_depth_row"),
    # after a flatten: the (N, 1) mask is the same in CHW and HWC order
    pytest.param(lambda: sk.Sequential(sk.Flatten(), sk.StochasticDepth(0.5, "row")), (2, 3, 4),
                 8, id="flatten_stochastic_depth_row"),
    pytest.param(lambda: sk.Sequential(C(2, 3, 3, seed=4), sk.StochasticDepth(0.2, "batch")),
                 (2, 5, 5), 4, id="conv_stochastic_depth_batch"),
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("make, shape, batch", SD_CASES)
def test_sd_case_masks_keep_and_drop(make, shape, batch, training):
    """Zeros match zeros and prove nothing: numpy's tensors are nonzero, and in training the row
    masks keep some samples and drop others (the batch mask keeps the batch at seed 0)."""
    case = make_case(minimal_net(make(), shape), shape, "float64", "random", batch,
                     training=training)
    assert all_zero(case.ref) == []
    assert (len(case.masks) == 1) == training
    for m in case.masks.values():
        assert m.all() if m.shape[0] == 1 else 0 < m.mean() < 1


# training on every case; eval (the identity, whatever the mode or the input's rank) on the
# first one only, to keep the suite lean
_, test_sd_matches_every_framework = equivalence_tests(SD_CASES)


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sd_eval_matches_every_framework(dtype, framework):
    model = sk.Sequential(C(2, 3, 3, seed=3), sk.StochasticDepth(0.3))
    assert_layer_matches(model, (2, 6, 5), framework, dtypes=(dtype,), batch=8, training=False)


@pytest.mark.onnxruntime
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_export_verifies(dtype, tmp_path):
    """`skylark export --to onnx`: an inference graph, where stochastic depth is the identity;
    the file is read back by onnxruntime and verified against numpy in eval mode."""
    import onnx
    from conftest import needs

    from reference import porting

    needs("onnxruntime")
    net = sk.Sequential(C(2, 3, 3, seed=3, dtype=dtype), sk.StochasticDepth(0.3), sk.Flatten(),
                        sk.Dense(3 * 4 * 3, 5, seed=4, dtype=dtype))
    rep = porting.export_weights(net, "onnx", tmp_path / "sd.onnx", input_shape=(2, 6, 5))
    assert rep["verification"]["ok"] and rep["portable"].dtype == dtype, rep["verification"]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "sd.onnx")).graph.node]
    assert "Identity" in ops and "Mul" not in ops
