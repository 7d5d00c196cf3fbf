"""ZeroPad2d: torch's padding order (left, right, top, bottom) against a loop oracle and
torch's nn.ZeroPad2d, finite differences with random cotangents, argument errors, and every
framework (Keras' ZeroPadding2D says H's pair first). A zero pad before a max-pool is not the
pool's own -inf padding: on ties with a padded 0 the gradient goes to the border and is lost,
in numpy as in every framework (the first maximum in row-major order)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import FRAMEWORK_PARAMS
from equivalence import assert_layer_matches, equivalence_tests, make_case, minimal_net
from oracle_import import zeropad_backward, zeropad_forward

import skylark as sk

from gradcheck import FD_RTOL, check_gradients, layer_fb

# int, asymmetric (every side different, one 0), none, H only
PADDINGS = [1, (1, 2, 0, 3), (0, 0, 0, 0), (0, 0, 2, 1)]


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def sides(padding):
    return (padding,) * 4 if isinstance(padding, int) else padding


@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_oracle_fd_and_shape(padding):
    """Pure data movement: exact against the loop oracle, both ways."""
    pad = sk.ZeroPad2d(padding)
    left, right, top, bottom = sides(padding)
    x = rand((2, 3, 4, 5))
    y = pad.forward(x)
    assert y.shape == (2, 3, 4 + top + bottom, 5 + left + right)
    assert pad.output_shape((3, 4, 5)) == y.shape[1:]
    np.testing.assert_array_equal(y, zeropad_forward(x, sides(padding)))
    cot = rand(y.shape, seed=1)
    np.testing.assert_array_equal(pad.backward(cot), zeropad_backward(cot, sides(padding)))
    assert check_gradients(layer_fb(pad, cot), x, {})["input"] <= FD_RTOL


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept(dtype):
    pad = sk.ZeroPad2d((1, 0, 2, 1))
    y = pad.forward(rand((1, 2, 3, 3)).astype(dtype))
    assert y.dtype == pad.backward(np.ones_like(y)).dtype == np.dtype(dtype)


@pytest.mark.torch
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_matches_torch_exactly(padding):
    torch = pytest.importorskip("torch")
    x = rand((2, 3, 4, 5))
    pad = sk.ZeroPad2d(padding)
    y = pad.forward(x)
    cot = rand(y.shape, seed=2)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.ZeroPad2d(padding)(xt)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(pad.backward(cot), dxt.numpy())


@pytest.mark.parametrize("bad", [-1, (1, 2, 3), (1, -1, 0, 0), [0, 0, 0, 0, 0], True, 1.5,
                                 (1, 1, 1, 1.0), "1", None])
def test_bad_padding_names_the_received_value(bad):
    with pytest.raises(ValueError, match=r"padding must be .*Received: padding="
                                         + re.escape(repr(bad))):
        sk.ZeroPad2d(bad)


def test_config_repr_and_shape_errors():
    pad = sk.ZeroPad2d(2)
    assert pad.config() == {"padding": [2, 2, 2, 2]}
    assert sk.ZeroPad2d([1, 2, 3, 4]).config() == {"padding": [1, 2, 3, 4]}
    assert repr(sk.ZeroPad2d((1, 2, 3, 4))) == "ZeroPad2d(padding=(1, 2, 3, 4))"
    assert sk.ZeroPad2d((1, 2, 3, 4)).pads() == (3, 4, 1, 2)  # (top, bottom, left, right)
    with pytest.raises(RuntimeError, match="before forward"):
        pad.backward(np.zeros((1, 1, 5, 5)))
    with pytest.raises(ValueError, match=r"4-D input. Received: input with shape \(3, 4\)"):
        pad.forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"Received: input shape \(5,\)"):
        pad.output_shape((5,))
    pad.forward(np.zeros((1, 2, 1, 1)))
    with pytest.raises(ValueError, match=r"\(1, 2, 5, 5\). Received: dy with shape \(1, 2, 1, 1\)"):
        pad.backward(np.zeros((1, 2, 1, 1)))


def test_zero_pad_then_max_pool_is_not_the_pools_own_padding():
    """On an all-negative map the zero border wins every border window (-inf padding never
    does); on an all-zero map each corner window ties, and the first maximum in row-major order
    is the padded cell: the gradient is lost there, where -inf padding routes it to a real
    cell."""
    padded = sk.Sequential(sk.ZeroPad2d(1), sk.MaxPool2D(2))
    own = sk.MaxPool2D(2, padding=1)
    neg = -1 - rand((1, 1, 4, 4)) ** 2
    assert (padded.forward(neg)[0, 0, 0, 0], padded.forward(neg)[0, 0, 2, 2]) == (0.0, 0.0)
    assert (own.forward(neg) < 0).all()
    zero, dy = np.zeros((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    padded.forward(zero)
    own.forward(zero)
    dx_padded, dx_own = padded.backward(dy), own.backward(dy)
    # the 6x6 padded map in 2x2 windows: a window in the top row or the left column starts
    # with a padded cell, which takes its gradient (5 of 9 lost); the others start with a real
    # cell: window (1, 1) with real (1, 1), window (1, 2) with real (1, 3) (its right column
    # is the border), (2, 1) with (3, 1), (2, 2) with (3, 3)
    want = np.zeros((4, 4))
    want[1::2, 1::2] = 1.0
    np.testing.assert_array_equal(dx_padded[0, 0], want)
    assert dx_own.sum() == 9 and dx_own[0, 0, 0, 0] == 1  # every window's gradient is kept


@pytest.mark.torch
def test_the_lost_tie_gradient_is_torchs_too():
    torch = pytest.importorskip("torch")
    xt = torch.zeros((1, 1, 4, 4), dtype=torch.float64, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(torch.nn.ZeroPad2d(1)(xt), 2)
    (dxt,) = torch.autograd.grad(yt, xt, torch.ones_like(yt))
    padded = sk.Sequential(sk.ZeroPad2d(1), sk.MaxPool2D(2))
    padded.forward(np.zeros((1, 1, 4, 4)))
    np.testing.assert_array_equal(padded.backward(np.ones((1, 1, 3, 3))), dxt.numpy())


# --- equivalence with every framework ---------------------------------------------------------

C = sk.Conv2D
ZEROPAD_CASES = [
    # every side different, one of them 0, then flatten -> dense (the flatten order)
    pytest.param(lambda: sk.Sequential(C(2, 3, 3, seed=3), sk.ZeroPad2d((1, 2, 0, 3))),
                 (2, 6, 5), 4, id="conv_zeropad_asymmetric"),
    # on the input itself, H only, then a strided conv (torchvision's explicit pad)
    pytest.param(lambda: sk.Sequential(sk.ZeroPad2d((0, 0, 2, 1)), C(2, 3, 3, stride=2, seed=4)),
                 (2, 5, 6), 4, id="zeropad_then_strided_conv"),
]

test_zeropad_case_reference_tensors_are_nonzero, test_zeropad_matches_every_framework = \
    equivalence_tests(ZEROPAD_CASES)


def tie_net():
    return sk.Sequential(sk.ZeroPad2d((1, 0, 1, 0)), sk.MaxPool2D(2))


def test_the_tie_case_sends_gradient_to_the_border():
    """The kinks input (exact zeros, the first sample all zero) makes border windows tie
    between a padded 0 and real zeros: numpy's gradient of the padded map is nonzero on the
    border, so the frameworks' test below compares that routing, not zeros."""
    case = make_case(minimal_net(tie_net(), (2, 6, 6)), (2, 6, 6), "float64", "kinks", 4)
    d = case.ref["cot/d.out.0"]
    assert np.abs(d[:, :, 0, :]).sum() > 0 and np.abs(d[:, :, :, 0]).sum() > 0
    assert np.abs(d[0, :, 0, 0]).sum() > 0  # the all-zero sample's corner: a padded winner


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_zero_pad_max_pool_ties_match_every_framework(framework):
    assert_layer_matches(tie_net(), (2, 6, 6), framework, inputs=("kinks",))


@pytest.mark.onnxruntime
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_export_verifies(dtype, tmp_path):
    """`skylark export --to onnx`'s path: the file is written, read back by onnxruntime and
    verified against numpy (an asymmetric pad: ONNX's pads are all begins, then all ends)."""
    from conftest import needs

    from reference import porting

    needs("onnxruntime")
    import onnx

    net = sk.Sequential(sk.Conv2D(2, 3, 3, seed=3, dtype=dtype), sk.ZeroPad2d((1, 2, 0, 3)),
                        sk.Flatten(), sk.Dense(3 * 7 * 6, 5, seed=4, dtype=dtype))
    rep = porting.export_weights(net, "onnx", tmp_path / "z.onnx", input_shape=(2, 6, 5))
    assert rep["verification"]["ok"] and rep["portable"].dtype == dtype, rep["verification"]
    assert "Pad" in {n.op_type for n in onnx.load(str(tmp_path / "z.onnx")).graph.node}
