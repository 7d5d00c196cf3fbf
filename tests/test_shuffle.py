"""ChannelShuffle: the permutation written out and against a loop oracle and torch, groups 1 and
C (no change), its inverse, finite differences with random cotangents, errors, and every
framework's forward and gradients; the porting trap (the NCHW recipe run on NHWC memory) shown
in numpy here, and planted in Keras by tests/test_traps.py (`skylark check` names the shuffle's
output first)."""

from __future__ import annotations

import numpy as np
import pytest
from equivalence import equivalence_tests
from oracle_mobile import channel_shuffle_backward, channel_shuffle_forward

import skylark as sk
from skylark.layers.shuffle import shuffle_channels

from gradcheck import FD_RTOL, check_gradients, layer_fb


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def channels(c, groups):
    """Which input channel lands in each output channel (a map whose value is its channel)."""
    x = np.arange(float(c)).reshape(1, c, 1, 1)
    return sk.ChannelShuffle(groups).forward(x).ravel().astype(int).tolist()


def test_the_permutation_written_out():
    """6 channels, 2 groups: [0 1 2 | 3 4 5] -> 0 3 1 4 2 5 (one of each group in turn);
    3 groups: [0 1 | 2 3 | 4 5] -> 0 2 4 1 3 5."""
    assert channels(6, 2) == [0, 3, 1, 4, 2, 5]
    assert channels(6, 3) == [0, 2, 4, 1, 3, 5]
    assert channels(8, 4) == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("c", [1, 4, 6])
def test_groups_one_and_c_change_nothing(c):
    assert channels(c, 1) == channels(c, c) == list(range(c))


@pytest.mark.parametrize("c, groups", [(6, 2), (6, 3), (12, 4), (8, 8), (5, 1)])
def test_fd_oracle_inverse_and_shape(c, groups):
    layer = sk.ChannelShuffle(groups)
    x = rand((2, c, 3, 4))
    y = layer.forward(x)
    assert y.shape == x.shape and layer.output_shape((c, 3, 4)) == (c, 3, 4)
    np.testing.assert_array_equal(y, channel_shuffle_forward(x, groups))
    cot = rand(y.shape, seed=1)
    dx = layer.backward(cot)
    np.testing.assert_array_equal(dx, channel_shuffle_backward(cot, groups))
    np.testing.assert_array_equal(shuffle_channels(y, c // groups), x)  # the inverse
    assert check_gradients(layer_fb(layer, cot), x, {})["input"] <= FD_RTOL


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept(dtype):
    layer = sk.ChannelShuffle(2)
    y = layer.forward(rand((1, 4, 2, 2)).astype(dtype))
    assert y.dtype == layer.backward(np.ones_like(y)).dtype == np.dtype(dtype)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c, groups", [(6, 2), (6, 3), (12, 4), (4, 1), (4, 4)])
def test_matches_torch_bit_for_bit(c, groups, dtype):
    """torch.nn.ChannelShuffle exists in the installed torch, and its float64 backward works."""
    torch = pytest.importorskip("torch")
    x = rand((2, c, 3, 2)).astype(dtype)
    layer = sk.ChannelShuffle(groups)
    y = layer.forward(x)
    cot = rand(y.shape, seed=2).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.ChannelShuffle(groups)(xt)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(layer.backward(cot), dxt.numpy())


@pytest.mark.parametrize("groups", [0, -2, True, 1.5, "2", None])
def test_bad_groups_name_the_received_value(groups):
    with pytest.raises(ValueError, match=rf"groups must be an int >= 1. Received: groups="
                                         rf"{groups!r}"):
        sk.ChannelShuffle(groups)


def test_channels_not_divisible_and_bad_shapes_are_named():
    layer = sk.ChannelShuffle(4)
    with pytest.raises(ValueError, match=r"divisible by groups=4. Received: input with 6 "
                                         r"channels"):
        layer.forward(np.zeros((1, 6, 2, 2)))
    with pytest.raises(ValueError, match=r"Received: input shape \(8,\)"):
        layer.output_shape((8,))
    with pytest.raises(ValueError, match=r"4-D input. Received: input with shape \(2, 8\)"):
        layer.forward(np.zeros((2, 8)))
    with pytest.raises(RuntimeError, match="before forward"):
        sk.ChannelShuffle(2).backward(np.zeros((1, 4, 1, 1)))
    layer.forward(np.zeros((1, 8, 2, 2)))
    with pytest.raises(ValueError, match=r"Received: dy with shape \(1, 8, 2, 1\)"):
        layer.backward(np.zeros((1, 8, 2, 1)))


def test_config_round_trip():
    layer = sk.ChannelShuffle(3)
    assert layer.config() == {"groups": 3} and repr(layer) == "ChannelShuffle(groups=3)"
    assert channels(6, **layer.config()) == [0, 2, 4, 1, 3, 5]


# --- the porting trap -----------------------------------------------------------------------

def test_nchw_recipe_on_nhwc_memory_is_not_the_shuffle():
    """On an NHWC array the shuffle is reshape (N, H, W, g, C/g), swap the last two, reshape;
    the NCHW code run on the same memory (reading it as if the channels came first) moves
    pixels between rows instead: another tensor, not even a per-pixel permutation."""
    n, c, h, w, g = 2, 6, 3, 4, 2
    x = rand((n, c, h, w))
    want = np.transpose(shuffle_channels(x, g), (0, 2, 3, 1))  # the shuffle, seen NHWC
    nhwc = np.transpose(x, (0, 2, 3, 1))
    right = nhwc.reshape(n, h, w, g, c // g).swapaxes(3, 4).reshape(n, h, w, c)
    np.testing.assert_array_equal(right, want)
    trap = nhwc.reshape(n, g, c // g, h, w).swapaxes(1, 2).reshape(n, h, w, c)
    assert not np.array_equal(trap, want)
    assert not np.array_equal(np.sort(trap, axis=3), np.sort(want, axis=3))  # pixels mixed


# --- equivalence with every framework -------------------------------------------------------

SHUFFLE_CASES = [
    # conv (6 channels) -> shuffle 3 -> conv: the shuffle's order reaches the next conv's
    # kernels, then (helper) flatten -> dense
    pytest.param(lambda: sk.Sequential(sk.Conv2D(2, 6, 3, seed=3), sk.ChannelShuffle(3),
                                       sk.Conv2D(6, 4, 1, seed=4), sk.ChannelShuffle(2)),
                 (2, 6, 5), 4, id="conv_shuffle3_conv_shuffle2"),
    # on the input itself, groups = C (no change) then 2
    pytest.param(lambda: sk.Sequential(sk.ChannelShuffle(4), sk.ChannelShuffle(2)), (4, 3, 5),
                 4, id="shuffle_c_then_2_on_map"),
]

test_shuffle_case_reference_tensors_are_nonzero, test_shuffle_matches_every_framework = \
    equivalence_tests(SHUFFLE_CASES)
