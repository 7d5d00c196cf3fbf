"""Every layout conversion between skylark and the frameworks. Nothing else in the repo transposes.

Layouts:
    skylark / torch   conv weight (O, I, kh, kw)   dense weight (out, in)   activations NCHW
                      flatten order C, H, W        names "0.weight", "0.bias" (state_dict)
    Keras / raw TF    conv kernel (kh, kw, I, O)   dense kernel (in, out)   activations NHWC
                      flatten order H, W, C        names "0.kernel", "0.bias" (skylark's index)

The trap (PITFALLS.md #1): a Dense that follows a Flatten indexes its inputs in flatten order, so
its rows must be permuted CHW <-> HWC with the feature map's shape, not merely transposed.

Parameters cross as NumPy arrays keyed by name; a gradient has its parameter's layout, so the same
functions convert gradients. All conversions are pure permutations: bit-exact both ways.

`plant=` arguments exist ONLY for the checker's own tests (tests/test_check.py): they inject a known
conversion bug so the tests can prove `skylark check` notices it. Never pass them otherwise.
"""

from __future__ import annotations

import numpy as np

from .spec import dense_input_maps, param_shapes

TRANSFER_PLANTS = ("dense_hwc", "kernel_transposed")


def check_params(params, spec: list[dict], what: str = "skylark") -> dict[str, np.ndarray]:
    """`params` as arrays after checking names and shapes against `spec` (skylark layout).

    ValueError names every missing/unexpected tensor, or the first mis-shaped one with both shapes.
    """
    expected = param_shapes(spec)
    got = {k: np.asarray(v) for k, v in params.items()}
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        raise ValueError(
            f"{what} parameters do not match the spec. Missing: "
            + ", ".join(f"{k} (expected shape {expected[k]})" for k in missing)
            + f"; unexpected: {extra}. Expected: {expected}"
        )
    for k, shape in expected.items():
        if got[k].shape != shape:
            raise ValueError(
                f"{what} parameter {k!r} has the wrong shape: expected {shape}, "
                f"received {got[k].shape}"
            )
    return {k: got[k] for k in expected}


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
        i = int(k.split(".")[0])
        if plant == "kernel_transposed" and spec[i]["kind"] == "conv2d" and k.endswith("weight"):
            v = _transposed_kernel(v, k)
        out[k] = np.array(v)
    return out


def from_torch(state, spec: list[dict]) -> dict[str, np.ndarray]:
    """torch state_dict arrays (or their gradients) -> skylark params: a checked copy."""
    return {k: np.array(v) for k, v in check_params(state, spec, "torch").items()}


# --- Keras / raw TF: HWIO kernels, (in, out) dense kernels, HWC flatten order -----------------


def keras_param_shapes(spec: list[dict], input_shape) -> dict[str, tuple[int, ...]]:
    """Keras/TF names ("0.kernel", "0.bias") -> shapes."""
    out = {}
    for k, shape in param_shapes(spec).items():
        i, n = k.split(".")
        if n == "bias":
            out[k] = shape
        elif spec[int(i)]["kind"] == "conv2d":
            o, c, kh, kw = shape
            out[f"{i}.kernel"] = (kh, kw, c, o)
        else:
            out[f"{i}.kernel"] = (shape[1], shape[0])
    return out


def to_keras(params, spec: list[dict], input_shape, plant: str | None = None):
    """skylark params -> Keras/TF arrays keyed "i.kernel" / "i.bias"."""
    _check_plant(plant, TRANSFER_PLANTS)
    params = check_params(params, spec)
    maps = dense_input_maps(spec, input_shape)
    out = {}
    for k, v in params.items():
        i, n = k.split(".")
        i = int(i)
        if n == "bias":
            out[k] = np.array(v)
            continue
        if spec[i]["kind"] == "conv2d":
            if plant == "kernel_transposed":
                v = _transposed_kernel(v, k)
            o, c, kh, kw = v.shape
            kern = v.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
            assert kern.shape == (kh, kw, c, o), kern.shape
        elif i in maps and plant != "dense_hwc":
            ch, h, w = maps[i]
            o = v.shape[0]
            kern = (
                v.reshape(o, ch, h, w)  # (out, C*H*W) -> (out, C, H, W): rows in CHW order
                .transpose(2, 3, 1, 0)  # (out, C, H, W) -> (H, W, C, out): HWC order
                .reshape(h * w * ch, o)  # -> (H*W*C, out), Keras' (in, out)
            )
            assert kern.shape == (v.shape[1], o), kern.shape
        else:  # plain dense, or the planted bug: rows left in CHW order
            kern = v.T  # (out, in) -> (in, out)
            assert kern.shape == v.shape[::-1], kern.shape
        out[f"{i}.kernel"] = np.ascontiguousarray(kern)
    return out


def from_keras(kparams, spec: list[dict], input_shape) -> dict[str, np.ndarray]:
    """Keras/TF arrays ("i.kernel" / "i.bias", or their gradients) -> skylark params."""
    expected = keras_param_shapes(spec, input_shape)
    got = {k: np.asarray(v) for k, v in kparams.items()}
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        raise ValueError(
            "Keras/TF parameters do not match the spec. Missing: "
            + ", ".join(f"{k} (expected shape {expected[k]})" for k in missing)
            + f"; unexpected: {extra}. Expected: {expected}"
        )
    maps = dense_input_maps(spec, input_shape)
    out = {}
    for k, shape in expected.items():
        v = got[k]
        if v.shape != shape:
            raise ValueError(
                f"Keras/TF parameter {k!r} has the wrong shape: expected {shape}, "
                f"received {v.shape}"
            )
        i, n = k.split(".")
        i = int(i)
        if n == "bias":
            out[k] = np.array(v)
            continue
        if spec[i]["kind"] == "conv2d":
            kh, kw, c, o = v.shape
            w = v.transpose(3, 2, 0, 1)  # (kh, kw, I, O) -> (O, I, kh, kw)
            assert w.shape == (o, c, kh, kw), w.shape
        elif i in maps:
            ch, h, wd = maps[i]
            o = v.shape[1]
            w = (
                v.reshape(h, wd, ch, o)  # (H*W*C, out) -> (H, W, C, out): rows in HWC order
                .transpose(3, 2, 0, 1)  # (H, W, C, out) -> (out, C, H, W): CHW order
                .reshape(o, ch * h * wd)  # -> (out, C*H*W), skylark's (out, in)
            )
            assert w.shape == v.shape[::-1], w.shape
        else:
            w = v.T  # (in, out) -> (out, in)
            assert w.shape == v.shape[::-1], w.shape
        out[f"{i}.weight"] = np.ascontiguousarray(w)
    return out


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
    "TRANSFER_PLANTS", "activation_from_keras", "activation_to_keras", "check_params",
    "from_keras", "from_torch", "keras_param_shapes", "nchw_to_nhwc", "nhwc_to_nchw",
    "to_keras", "to_torch",
]
