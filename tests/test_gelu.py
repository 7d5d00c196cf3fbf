"""The gated activations, GELU and SiLU, and the erf/erfc under GELU: erf and erfc against
Python's math.erf/math.erfc over the whole range (tails, subnormals, specials, float32), the
ONNX float64 erfc graph the same way; finite differences with random cotangents and the loop
oracle; saturation without overflow; the `approximate` argument and every framework's default
read from the installed library; the stock float64 inexactness kept in view (tf.nn.gelu's
float32 constants); the float32 budget; equivalence with every framework."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from equivalence import equivalence_tests, make_case, minimal_net
from oracle_mobile import gelu_backward, gelu_forward, silu_backward, silu_forward

import skylark as sk
from skylark.layers.erf import THRESH, XBIG, erf, erfc

from gradcheck import FD_RTOL, check_gradients, layer_fb, rel_error

ORACLE_RTOL = 1e-14  # math.erf / math.tanh against Cody's erfc and numpy's tanh: a few ulps


def rand(shape, seed=0, scale=2.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def ulps(got, want):
    """|got - want| in units of the spacing at want (of the smallest subnormal at 0)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.abs(got - want) / np.spacing(np.abs(want))


def erf_points():
    rng = np.random.default_rng(0)
    edges = [THRESH, 4.0, XBIG, 0.5, 26.543, 27.2]
    near = [np.nextafter(e, d) for e in edges for d in (-np.inf, np.inf)]
    x = np.concatenate([np.linspace(-7, 7, 140001), rng.standard_normal(50000) * 3,
                        rng.uniform(-28, 28, 20000), 10.0 ** np.arange(-300, 2),
                        edges, near, [0.0, 5e-324, 1e-310]])
    return np.concatenate([x, -x])


# --- erf and erfc ---------------------------------------------------------------------------

def test_erf_and_erfc_within_a_few_ulps_of_math_over_the_whole_range():
    """Cody's rational functions in float64 (skylark.layers.erf): measured <= 4 ulps (erf) and
    <= 7 ulps (erfc, where it is a normal number) over these points; erfc's subnormal tail
    (|x| > 26.55) to within its absolute resolution."""
    x = erf_points()
    e, c = erf(x), erfc(x)
    want_e = np.array([math.erf(v) for v in x])
    want_c = np.array([math.erfc(v) for v in x])
    assert ulps(e, want_e).max() <= 5
    normal = want_c >= np.finfo(np.float64).tiny
    assert ulps(c[normal], want_c[normal]).max() <= 8
    assert np.abs(c[~normal] - want_c[~normal]).max() <= 4 * 5e-324
    np.testing.assert_array_equal(erf(-x), -e)  # odd, exactly
    big = x > THRESH  # erfc(-x) = 2 - erfc(x), exactly where it is computed so
    np.testing.assert_array_equal(erfc(-x[big]), 2 - c[big])


def test_erf_float32_is_the_float64_result_rounded_once():
    x = erf_points()
    x32 = x[np.abs(x) < 3e38].astype(np.float32)
    for f, ref in ((erf, math.erf), (erfc, math.erfc)):
        got = f(x32)
        assert got.dtype == np.float32
        want = np.array([ref(float(v)) for v in x32]).astype(np.float32)
        assert ulps(got, want).max() <= 1, f.__name__


def test_erf_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan])
    e, c = erf(x), erfc(x)
    np.testing.assert_array_equal(e, [0.0, -0.0, 1.0, -1.0, np.nan])
    assert np.signbit(e[1]) and not np.signbit(e[0])
    np.testing.assert_array_equal(c, [1.0, 1.0, 0.0, 2.0, np.nan])
    assert erf(np.array([1, 2])).dtype == np.float64  # integers: float64
    assert erf(0.5) == pytest.approx(math.erf(0.5), rel=1e-16) and np.ndim(erf(0.5)) == 0


@pytest.mark.onnxruntime
def test_onnx_float64_erfc_graph_matches_math():
    """reference.kinds.gated.onnx_erfc: Cody's erfc as ONNX nodes (onnxruntime has no float64
    Erf), the same accuracy as numpy's."""
    pytest.importorskip("onnxruntime")
    from onnx import helper

    from reference.kinds.gated import onnx_erfc
    from reference.runners.onnx_graph import IR_VERSION, OPSET, OnnxGraph
    from reference.runners.onnx_ref import inference_session

    b = OnnxGraph("float64")
    z = b.add_input("z", b.elem, ["N"])
    b.add_output("erfc", onnx_erfc(b, z), ["N"])
    graph = helper.make_graph(b.nodes, "erfc", b.inputs, b.outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    x = erf_points()
    x = x[np.isfinite(x)]
    (got,) = inference_session(model).run(None, {"z": x})
    want = np.array([math.erfc(v) for v in x])
    normal = want >= np.finfo(np.float64).tiny
    assert ulps(got[normal], want[normal]).max() <= 8
    assert np.abs(got[~normal] - want[~normal]).max() <= 4 * 5e-324
    # numpy's to a few ulps (onnxruntime's exp is not numpy's)
    np.testing.assert_allclose(got, erfc(x), rtol=2e-15, atol=1e-320)


# --- GELU and SiLU: gradients, oracle, saturation -------------------------------------------

GATED = [sk.SiLU(), sk.GELU(), sk.GELU("tanh")]


def _oracle(layer):
    if isinstance(layer, sk.SiLU):
        return silu_forward, silu_backward
    a = layer.approximate
    return (lambda x: gelu_forward(x, a)), (lambda dy, x: gelu_backward(dy, x, a))


@pytest.mark.parametrize("layer", GATED, ids=repr)
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 5)])
def test_fd_grid_and_loop_oracle(layer, shape):
    x = rand(shape)
    layer = type(layer)(**layer.config())
    y = layer.forward(x)
    cot = rand(y.shape, seed=1, scale=1.0)
    assert check_gradients(layer_fb(layer, cot), x, {})["input"] <= FD_RTOL
    forward, backward = _oracle(layer)
    assert rel_error(y, forward(x)) <= ORACLE_RTOL
    layer.forward(x)
    assert rel_error(layer.backward(cot), backward(cot, x)) <= ORACLE_RTOL


@pytest.mark.parametrize("layer", GATED, ids=repr)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saturation_without_overflow_and_dtype_kept(layer, dtype):
    """|x| up to 1000: exp and erfc underflow to 0 (the right answer); nothing overflows or
    turns nan. y -> x and f' -> 1 above, y -> -0 and f' -> 0 below."""
    x = np.array([-1000.0, -60.0, -20.0, 0.0, 20.0, 60.0, 1000.0], dtype)
    layer = type(layer)(**layer.config())
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(x))
    assert y.dtype == dx.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y[[0, 3, 5, 6]], [0.0, 0.0, 60.0, 1000.0])
    assert np.abs(y[1]) < 1e-20 and np.abs(dx[1]) < 1e-20  # -60 e^-60 and its like
    np.testing.assert_array_equal(dx[[0, 5, 6]], [0.0, 1.0, 1.0])
    assert dx[3] == 0.5  # every form's f'(0)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", GATED, ids=repr)
def test_values_and_gradients_match_torch(layer, dtype):
    """Within a few ulps of torch's kernels (float64: the bar is 1e-10, this is ~1e-15)."""
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-9, 9, 721), rand(200)]).astype(dtype)
    cot = rand(x.shape, seed=3, scale=1.0).astype(dtype)
    module = (torch.nn.SiLU() if isinstance(layer, sk.SiLU)
              else torch.nn.GELU(approximate=layer.approximate))
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(cot))
    layer = type(layer)(**layer.config())
    y, dx = layer.forward(x), layer.backward(cot)
    eps = float(np.finfo(dtype).eps)
    lip = 1.13  # |f'| <= 1.13: each forward error is a few eps * |x|, each gradient's * |dy|
    assert (np.abs(y - yt.detach().numpy()) <= 8 * eps * np.abs(x)).all()
    assert (np.abs(dx - dxt.numpy()) <= 32 * eps * lip * np.abs(cot)).all()


# --- the `approximate` argument and the frameworks' defaults --------------------------------

@pytest.mark.parametrize("bad", [True, False, "exact", "Tanh", None, 1])
def test_gelu_bad_approximate_names_the_received_value(bad):
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh'\)"
                                         rf".*Received: approximate={bad!r}"):
        sk.GELU(bad)


def test_gelu_bool_hint_names_the_other_frameworks_spelling():
    with pytest.raises(ValueError, match="True is 'tanh'"):
        sk.GELU(approximate=True)


def test_gelu_states_its_approximation():
    """The frameworks' defaults differ (below): the config always carries it."""
    assert sk.GELU().config() == {"approximate": "none"}
    assert sk.GELU("tanh").config() == {"approximate": "tanh"}
    assert repr(sk.GELU("tanh")) == "GELU(approximate='tanh')"
    assert sk.SiLU().config() == {}


def _default(fn, name="approximate"):
    return inspect.signature(fn).parameters[name].default


@pytest.mark.torch
def test_torch_gelu_default_is_exact():
    torch = pytest.importorskip("torch")
    assert _default(torch.nn.GELU.__init__) == "none"
    assert torch.nn.GELU().approximate == "none"


@pytest.mark.tf
def test_tf_gelu_default_is_exact():
    tf = pytest.importorskip("tensorflow")
    assert _default(tf.nn.gelu) is False


@pytest.mark.jax
def test_jax_gelu_default_is_tanh():
    jax = pytest.importorskip("jax")
    assert _default(jax.nn.gelu) is True


@pytest.mark.keras
def test_keras_gelu_defaults_exact_activation_but_tanh_op():
    """keras.activations.gelu (what Activation("gelu") calls) is exact by default; the op
    keras.ops.gelu is the tanh approximation by default. Checked by value too."""
    keras = pytest.importorskip("keras")
    assert _default(keras.activations.gelu) is False
    assert _default(keras.ops.gelu) is True
    x = np.linspace(-4, 4, 81).reshape(1, -1)
    act = keras.ops.convert_to_numpy(keras.layers.Activation("gelu")(x.astype("float32")))
    exact = gelu_forward(x, "none")
    tanh = gelu_forward(x, "tanh")
    assert np.abs(act - exact).max() < 1e-6 < 1e-4 < np.abs(act - tanh).max()


@pytest.mark.tf
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_stock_tf_gelu_is_float32_accurate_in_float64(approximate):
    """Why the TF reference (and Keras on TensorFlow) spells GELU out in float64: tf.nn.gelu
    casts its constants through float32. The reference's TF layer is exact. When TF fixes it,
    this fails: use tf.nn.gelu in float64 too."""
    tf = pytest.importorskip("tensorflow")
    from reference.budgets import F64_RTOL
    from reference.kinds import KINDS

    x = np.linspace(-6, 6, 241)
    want = gelu_forward(x, approximate)
    stock = tf.nn.gelu(tf.constant(x), approximate=approximate == "tanh").numpy()
    ours = KINDS["gelu"].tf({"kind": "gelu", "approximate": approximate}, None,
                            tf.constant(x), {}, None).numpy()
    assert np.abs(stock - want).max() > 2 * F64_RTOL
    assert np.abs(ours - want).max() < 1e-14


@pytest.mark.keras
def test_keras_reference_gelu_is_exact_in_float64_on_tensorflow():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"stock gelu is exact on Keras' {keras.backend.backend()} backend")
    from reference.kinds import KINDS
    from reference.runners.keras_layers import ExactGELU
    from reference.spec import describe, geometry

    for approximate in ("none", "tanh"):
        spec = describe(sk.Sequential(sk.GELU(approximate)))
        (layer,) = KINDS["gelu"].keras(spec[0], geometry(spec, (1, 2, 4))[0], "float64")
        assert isinstance(layer, ExactGELU)
        x = np.linspace(-5, 5, 8).reshape(1, 2, 4, 1)
        got = keras.ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(got, gelu_forward(x, approximate), rtol=0, atol=1e-15)


# --- the float32 budget ---------------------------------------------------------------------

@pytest.mark.parametrize("approximate, grad", [("none", 4), ("tanh", 48)])
def test_float32_budget_counts_the_functions_own_evaluation(approximate, grad):
    """On the input nothing is reduced before the activation: its output's budget is its own
    evaluation's, K_SAFETY * eps32 * 4 * (1.13 max|x|); its input gradient adds the Dense's
    out_features and the derivative's own count (reference.kinds.gated) to the cotangent
    pass."""
    from reference.budgets import EPS32, K_SAFETY

    case = make_case(minimal_net(sk.GELU(approximate), (2, 3, 4)), (2, 3, 4), "float32",
                     "random", 4)
    m = 1.13 * np.abs(case.x.astype(np.float64)).max()
    assert case.budget["out.0"] == pytest.approx(K_SAFETY * EPS32 * 4 * m, rel=1e-12)
    dense = case.spec[-1]["out_features"]
    g = np.abs(case.cotangent.astype(np.float64)) @ np.abs(
        case.state["2.weight"].astype(np.float64))
    assert case.budget["cot/d.input"] == pytest.approx(
        K_SAFETY * EPS32 * (dense + grad) * 1.13 * g.max(), rel=1e-12)


# --- equivalence with every framework -------------------------------------------------------

def _wide_conv(cin, cout, seed):
    """Conv outputs over about +-10 (weights x 20): the tanh form saturates there, where the
    float32 derivative is least accurate in TF and JAX (the budget's 48)."""
    conv = sk.Conv2D(cin, cout, 3, seed=seed)
    conv.weight *= 20
    return conv


GATED_CASES = [
    pytest.param(lambda: sk.SiLU(), (2, 5, 6), 4, id="silu_on_map"),
    pytest.param(lambda: sk.GELU(), (2, 5, 6), 4, id="gelu_on_map"),
    pytest.param(lambda: sk.GELU("tanh"), (2, 5, 6), 4, id="gelu_tanh_on_map"),
    pytest.param(lambda: sk.Sequential(_wide_conv(2, 3, 3), sk.GELU()), (2, 6, 5), 4,
                 id="conv_gelu"),
    pytest.param(lambda: sk.Sequential(_wide_conv(2, 3, 4), sk.GELU("tanh")), (2, 6, 5), 4,
                 id="conv_gelu_tanh"),
    pytest.param(lambda: sk.Sequential(_wide_conv(2, 3, 5), sk.SiLU(), sk.Conv2D(3, 2, 1, seed=6),
                                       sk.SiLU()), (2, 6, 5), 4, id="conv_silu_conv_silu"),
]

test_gated_case_reference_tensors_are_nonzero, test_gated_matches_every_framework = \
    equivalence_tests(GATED_CASES)


@pytest.mark.onnxruntime
def test_float64_onnx_graph_avoids_the_kernels_onnxruntime_lacks():
    """float32 uses ONNX's own Erf, HardSigmoid (alpha 1/6 stated) and HardSwish; float64 has no
    kernel for any of them in onnxruntime's CPU provider, so its graph spells them out."""
    pytest.importorskip("onnxruntime")
    from reference.runners.onnx_graph import build_onnx_model
    from reference.spec import describe

    model = sk.Sequential(sk.GELU(), sk.Hardsigmoid(), sk.Hardswish(), sk.Flatten(),
                          sk.Dense(12, 3))
    spec, state = describe(model), model.state()
    ops = {d: {n.op_type for n in build_onnx_model(spec, state, d, (1, 3, 4)).graph.node}
           for d in ("float32", "float64")}
    lacking = {"Erf", "HardSigmoid", "HardSwish"}
    assert lacking <= ops["float32"] and not lacking & ops["float64"]
    graph = build_onnx_model(spec, state, "float32", (1, 3, 4)).graph
    (hs,) = [n for n in graph.node if n.op_type == "HardSigmoid"]
    attrs = {a.name: a.f for a in hs.attribute}
    assert attrs["alpha"] == pytest.approx(1 / 6, rel=1e-7) and attrs["beta"] == 0.5
