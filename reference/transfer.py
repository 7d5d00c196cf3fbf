"""Every layout conversion between skylark and the frameworks. Nothing else in the repo transposes.

Layouts:
    skylark / torch   conv weight (O, I, kh, kw)   dense weight (out, in)   activations NCHW
                      flatten order C, H, W        names "0.weight", "0.bias" (state_dict)
    ONNX              skylark's layouts and names (Conv OIHW, Gemm with transB=1, NCHW)
    Keras / raw TF    conv kernel (kh, kw, I, O)   dense kernel (in, out)   activations NHWC
                      flatten order H, W, C        names "0.kernel", "0.bias" (skylark's index)

The trap: a Dense that follows a Flatten indexes its inputs in flatten order, so
its rows must be permuted CHW <-> HWC with the feature map's shape, not merely transposed.

Parameters cross as NumPy arrays keyed by name; a gradient has its parameter's layout, so the same
functions convert gradients. All conversions are pure permutations: bit-exact both ways.

`plant=` arguments exist ONLY for the checker's own tests (tests/test_check.py): they inject a known
conversion bug so the tests can prove `skylark check` notices it. Never pass them otherwise.
"""

from __future__ import annotations

import numpy as np

from .kinds import KINDS
from .spec import geometry, node_names, param_shapes, state_shapes

TRANSFER_PLANTS = ("dense_hwc", "kernel_transposed")


def check_names_shapes(got, expected: dict, what: str) -> dict[str, np.ndarray]:
    """`got` as arrays in `expected`'s order, after checking names and shapes.

    ValueError names every missing/unexpected tensor, or else every mis-shaped one with both
    shapes.
    """
    got = {k: np.asarray(v) for k, v in got.items()}
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        raise ValueError(
            f"{what} parameters do not match the spec. Missing: "
            + ", ".join(f"{k} (expected shape {expected[k]})" for k in missing)
            + f"; unexpected: {extra}. Expected: {expected}"
        )
    bad = [k for k, shape in expected.items() if got[k].shape != tuple(shape)]
    if bad:
        k, more = bad[0], "".join(f"; {j!r}: expected {tuple(expected[j])}, received "
                                  f"{got[j].shape}" for j in bad[1:])
        raise ValueError(
            f"{what} parameter {k!r} has the wrong shape: expected {tuple(expected[k])}, "
            f"received {got[k].shape}" + (f" (also mis-shaped{more})" if more else "")
        )
    return {k: got[k] for k in expected}


def expected_shapes(spec: list[dict], grads: bool = False) -> dict[str, tuple[int, ...]]:
    """What crosses: the whole state (parameters and buffers), or for gradients the
    parameters only."""
    return param_shapes(spec) if grads else state_shapes(spec)


def check_params(params, spec: list[dict], what: str = "skylark",
                 grads: bool = False) -> dict[str, np.ndarray]:
    """`params` (skylark layout and names: the state, or gradients) as arrays, checked against
    `spec`."""
    return check_names_shapes(params, expected_shapes(spec, grads), what)


def _split(key: str, spec: list[dict]) -> tuple[int, str]:
    """"layer1.0.conv1.weight" -> (the node's index in `spec`, "weight")."""
    node, name = key.rsplit(".", 1)
    return node_names(spec).index(node), name


def _check_plant(plant, allowed) -> None:
    if plant is not None and plant not in allowed:
        raise ValueError(f"plant must be None or one of {allowed}. Received: plant={plant!r}")


def _transposed_kernel(w: np.ndarray, name: str) -> np.ndarray:
    """Planted bug (tests only): swap the kernel's kh and kw axes."""
    if w.shape[-1] != w.shape[-2]:
        raise ValueError(f"plant 'kernel_transposed' needs a square kernel; {name} is {w.shape}")
    return w.swapaxes(-1, -2)


# --- torch: the same layout and names as skylark --------------------------------------------


def to_torch(params, spec: list[dict], plant: str | None = None) -> dict[str, np.ndarray]:
    """skylark params -> torch state_dict arrays (identical layout: OIHW, (out, in))."""
    _check_plant(plant, ("kernel_transposed",))
    out = {}
    for k, v in check_params(params, spec).items():
        i, _ = _split(k, spec)
        if plant == "kernel_transposed" and spec[i]["kind"] == "conv2d" and k.endswith("weight"):
            v = _transposed_kernel(v, k)
        out[k] = np.array(v)
    return out


def from_torch(state, spec: list[dict], grads: bool = False) -> dict[str, np.ndarray]:
    """torch state_dict arrays (or, `grads`, their gradients) -> skylark's: a checked copy.
    torch's BatchNorm counter `num_batches_tracked` has no skylark counterpart (it only
    matters for momentum=None, which skylark does not offer) and is dropped."""
    state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    return {k: np.array(v) for k, v in check_params(state, spec, "torch", grads).items()}


# --- ONNX: NCHW, OIHW Conv weights, Gemm(transB=1) takes (out, in): skylark's layout again ------


def to_onnx(params, spec: list[dict]) -> dict[str, np.ndarray]:
    """skylark state -> ONNX initializers (identical layout and names: a checked copy; the
    graph reads the dense weight through Gemm's transB=1, so no transpose is made)."""
    return {k: np.array(v) for k, v in check_params(params, spec).items()}


def from_onnx(inits, spec: list[dict]) -> dict[str, np.ndarray]:
    """ONNX initializers named by skylark state names -> skylark's: a checked copy (constants
    the graph adds itself, "const_*", are not state and are left out)."""
    state = {k: v for k, v in inits.items() if not k.startswith("const_")}
    return {k: np.array(v) for k, v in check_params(state, spec, "ONNX").items()}


# --- Keras / raw TF: HWIO kernels, (in, out) dense kernels, HWC flatten order -----------------
# One layout rule per kind with a weight: (skylark -> Keras, Keras -> skylark), each given the
# array and the layer's Geometry. Biases are the same everywhere.


def _conv_to_keras(v, g):
    o, c, kh, kw = v.shape
    kern = v.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
    assert kern.shape == (kh, kw, c, o), kern.shape
    return kern


def _conv_from_keras(v, g):
    kh, kw, c, o = v.shape
    w = v.transpose(3, 2, 0, 1)  # (kh, kw, I, O) -> (O, I, kh, kw)
    assert w.shape == (o, c, kh, kw), w.shape
    return w


def _dense_to_keras(v, g):
    if g.in_flat_source is None:  # rows are plain features: a transpose
        kern = v.T  # (out, in) -> (in, out)
        assert kern.shape == v.shape[::-1], kern.shape
        return kern
    # The flatten-order trap: the rows follow the map's flatten order, CHW here, HWC in Keras.
    ch, h, w = g.in_flat_source
    o = v.shape[0]
    kern = (
        v.reshape(o, ch, h, w)  # (out, C*H*W) -> (out, C, H, W): rows in CHW order
        .transpose(2, 3, 1, 0)  # (out, C, H, W) -> (H, W, C, out): HWC order
        .reshape(h * w * ch, o)  # -> (H*W*C, out), Keras' (in, out)
    )
    assert kern.shape == (v.shape[1], o), kern.shape
    return kern


def _dense_from_keras(v, g):
    if g.in_flat_source is None:
        w = v.T  # (in, out) -> (out, in)
        assert w.shape == v.shape[::-1], w.shape
        return w
    ch, h, wd = g.in_flat_source
    o = v.shape[1]
    w = (
        v.reshape(h, wd, ch, o)  # (H*W*C, out) -> (H, W, C, out): rows in HWC order
        .transpose(3, 2, 0, 1)  # (H, W, C, out) -> (out, C, H, W): CHW order
        .reshape(o, ch * h * wd)  # -> (out, C*H*W), skylark's (out, in)
    )
    assert w.shape == v.shape[::-1], w.shape
    return w


def depthwise_kernel_from_keras(v: np.ndarray) -> np.ndarray:
    """A Keras DepthwiseConv2D kernel (kh, kw, C, M) as the HWIO kernel (kh, kw, 1, C*M) of
    the grouped conv2d (groups=C) it is, for the conv rule above. Output channel c*M + m is
    input channel c's m-th filter in both: TF's depthwise order and torch's grouped order
    (group c owns outputs c*M .. c*M + M - 1), so a row-major reshape, no transpose."""
    kh, kw, c, m = v.shape
    kern = v.reshape(kh, kw, 1, c * m)  # (kh, kw, C, M) -> (kh, kw, 1, C*M): c*M + m
    assert kern[:, :, 0, (c - 1) * m].tobytes() == v[:, :, c - 1, 0].tobytes()
    return kern


KERAS_LAYOUTS = {
    "conv2d": (_conv_to_keras, _conv_from_keras),
    "dense": (_dense_to_keras, _dense_from_keras),
}


def check_layout_rules(kinds=None) -> None:
    """RuntimeError naming every kind with a weight Keras calls a kernel (a layout that
    differs) but no layout rule: run at import, so such a kind fails loudly instead of having
    its weight copied untransposed. (A batchnorm2d weight is Keras' gamma, a plain vector.)"""
    missing = [k for k, kind in (kinds or KINDS).items()
               if kind.keras_names.get("weight") == "kernel"
               and "weight" in kind.layer.param_names and k not in KERAS_LAYOUTS]
    if missing:
        raise RuntimeError(f"reference.transfer: no Keras layout rule for kind(s) {missing}")


check_layout_rules()


def _keras_name(skylark_name: str, spec: list[dict]) -> str:
    """"3.weight" -> "3.kernel" (a conv or dense), "3.gamma" (a batchnorm2d), ... (the node's
    own name kept: "layer1.0.conv1.weight" -> "layer1.0.conv1.kernel")."""
    i, n = _split(skylark_name, spec)
    return f"{node_names(spec)[i]}.{KINDS[spec[i]['kind']].keras_names.get(n, n)}"


def keras_param_shapes(spec: list[dict], input_shape, grads: bool = False):
    """Keras/TF names ("0.kernel", "0.bias", "2.moving_mean") -> shapes (each weight's rule
    applied to a placeholder of its skylark shape, so the shapes cannot disagree with the
    rules)."""
    geo = geometry(spec, input_shape)
    out = {}
    for k, shape in expected_shapes(spec, grads).items():
        i, n = _split(k, spec)
        rule = KERAS_LAYOUTS.get(spec[i]["kind"])
        if n == "weight" and rule:
            shape = rule[0](np.empty(shape, np.float32), geo[i]).shape
        out[_keras_name(k, spec)] = tuple(shape)
    return out


def to_keras(params, spec: list[dict], input_shape, plant: str | None = None):
    """skylark state -> Keras/TF arrays keyed "i.kernel" / "i.bias" / "i.gamma" ..."""
    _check_plant(plant, TRANSFER_PLANTS)
    geo = geometry(spec, input_shape)
    out = {}
    for k, v in check_params(params, spec).items():
        i, n = _split(k, spec)
        s, g = spec[i], geo[i]
        if n == "weight" and s["kind"] in KERAS_LAYOUTS:
            if plant == "kernel_transposed" and s["kind"] == "conv2d":
                v = _transposed_kernel(v, k)
            if plant == "dense_hwc" and s["kind"] == "dense":
                g = g._replace(in_flat_source=None)  # planted: rows left in CHW order
            v = KERAS_LAYOUTS[s["kind"]][0](v, g)
        out[_keras_name(k, spec)] = np.ascontiguousarray(v)
    return out


def from_keras(kparams, spec: list[dict], input_shape, grads: bool = False):
    """Keras/TF arrays ("i.kernel", "i.bias", ..., or, `grads`, their gradients) -> skylark's."""
    got = check_names_shapes(kparams, keras_param_shapes(spec, input_shape, grads), "Keras/TF")
    geo = geometry(spec, input_shape)
    out = {}
    for k in expected_shapes(spec, grads):
        i, n = _split(k, spec)
        v = got[_keras_name(k, spec)]
        kind = spec[i]["kind"]
        if n == "weight" and kind in KERAS_LAYOUTS:
            v = KERAS_LAYOUTS[kind][1](v, geo[i])
        out[k] = np.ascontiguousarray(v)
    return out


# --- raw JAX: skylark's own layouts, nothing to convert -------------------------------------
# The jax reference runs lax.conv_general_dilated with NCHW/OIHW dimension numbers, keeps the
# Dense weight (out, in) and flattens NCHW maps (C, H, W order), so no array is transposed on
# the way in or out: these two only check names and shapes, and copy.


def to_jax(params, spec: list[dict]) -> dict[str, np.ndarray]:
    """skylark state -> the jax reference's arrays (identical layout: NCHW, OIHW, (out, in))."""
    return {k: np.array(v) for k, v in check_params(params, spec).items()}


def from_jax(state, spec: list[dict], grads: bool = False) -> dict[str, np.ndarray]:
    """The jax reference's arrays (or, `grads`, their gradients) -> skylark's: a checked copy."""
    return {k: np.array(v) for k, v in check_params(state, spec, "jax", grads).items()}


# --- activations ------------------------------------------------------------------------------


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW batch (4-D). Received: shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected an NHWC batch (4-D). Received: shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)


def activation_from_keras(a: np.ndarray, flat_source=None) -> np.ndarray:
    """A Keras/TF activation (or its gradient) -> skylark layout.

    4-D: NHWC -> NCHW. 2-D flattened from a (C, H, W) map (`flat_source`): HWC -> CHW feature
    order. Any other 2-D tensor (after a dense) is already in skylark's order.
    """
    a = np.asarray(a)
    if a.ndim == 4:
        return nhwc_to_nchw(a)
    if flat_source is None:
        return np.array(a)
    c, h, w = flat_source
    n = a.shape[0]
    assert a.shape == (n, h * w * c), (a.shape, flat_source)
    # (N, H*W*C) -> (N, H, W, C) -> (N, C, H, W) -> (N, C*H*W)
    return np.ascontiguousarray(a.reshape(n, h, w, c).transpose(0, 3, 1, 2).reshape(n, -1))


def activation_to_keras(a: np.ndarray, flat_source=None) -> np.ndarray:
    """The inverse of `activation_from_keras` (skylark -> Keras/TF layout)."""
    a = np.asarray(a)
    if a.ndim == 4:
        return nchw_to_nhwc(a)
    if flat_source is None:
        return np.array(a)
    c, h, w = flat_source
    n = a.shape[0]
    assert a.shape == (n, c * h * w), (a.shape, flat_source)
    # (N, C*H*W) -> (N, C, H, W) -> (N, H, W, C) -> (N, H*W*C)
    return np.ascontiguousarray(a.reshape(n, c, h, w).transpose(0, 2, 3, 1).reshape(n, -1))


__all__ = [
    "KERAS_LAYOUTS", "TRANSFER_PLANTS", "activation_from_keras", "activation_to_keras",
    "check_layout_rules", "check_names_shapes", "check_params", "depthwise_kernel_from_keras",
    "expected_shapes",
    "from_jax", "from_keras", "from_onnx", "from_torch", "keras_param_shapes", "nchw_to_nhwc",
    "nhwc_to_nchw", "to_jax", "to_keras", "to_onnx", "to_torch",
]
