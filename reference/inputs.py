"""The inputs of an equivalence check: one batch (x, labels, cotangent) and the weights.

    x, labels, cot = make_batch("ties", 4, (1, 28, 28), 10, seed=0, dtype="float32")
    params = dyadic_params(model.params())   # ties stay ties in every framework
"""

from __future__ import annotations

import math

import numpy as np

INPUTS = ("random", "ties", "digits", "kinks")


def make_batch(kind: str, batch: int, input_shape, num_classes: int, seed: int, dtype: str):
    """(x NCHW, labels, cotangent) for one batch, from `np.random.default_rng(seed)`.

    random: uniform [-0.5, 0.5]. ties: a constant -0.5 background with a few +0.5 strokes, so
    most pool windows tie (with a bias-free conv the whole conv output is constant there).
    digits: the bundled 8x8 digits scaled x/16 - 0.5 (needs input_shape (1, 8, 8)).
    kinks: mostly exact zeros, the other pixels -3, -0.5, 0.5, 3 or 6 (the kinks of ReLU6,
    Hardsigmoid and Hardswish), the first sample all zero: bias-free layers then meet
    activation kinks exactly, pool windows tie at 0, and a bias-free net gives that sample
    equal logits.
    """
    rng = np.random.default_rng(seed)
    shape = (batch, *input_shape)
    if kind == "random":
        x = rng.uniform(-0.5, 0.5, shape)
        labels = rng.integers(0, num_classes, batch)
    elif kind == "ties":
        x = np.full(shape, -0.5)
        h, w = input_shape[1:]
        for n in range(batch):
            for _ in range(3):  # a horizontal and a vertical stroke, 2 pixels wide
                r, c = rng.integers(0, h), rng.integers(0, w)
                x[n, :, r : r + 2, max(c - w // 3, 0) : c + w // 3] = 0.5
                x[n, :, max(r - h // 3, 0) : r + h // 3, c : c + 2] = 0.5
        labels = rng.integers(0, num_classes, batch)
    elif kind == "kinks":
        x, labels = _kinks(rng, shape), rng.integers(0, num_classes, batch)
    elif kind == "digits":
        if tuple(input_shape) != (1, 8, 8):
            raise ValueError(f"digits are (1, 8, 8) images. Received: input_shape={input_shape}")
        xs, ys = _digits()
        idx = rng.choice(len(ys), batch, replace=False)
        x, labels = xs[idx], ys[idx] % num_classes
    else:
        raise ValueError(f"input must be one of {INPUTS}. Received: {kind!r}")
    cot = rng.standard_normal((batch, num_classes))
    return x.astype(dtype), labels.astype(np.int64), cot.astype(dtype)


def _kinks(rng, shape) -> np.ndarray:
    """make_batch's kinks input: zeros and kink values in every later sample (dyadic, so the
    sums a bias-free layer makes of them are exact in every framework)."""
    x = np.zeros(shape)
    x[1:] = rng.choice([-3.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 3.0, 6.0],
                       size=(shape[0] - 1, *shape[1:]))
    return x


def _digits():
    """The bundled digits (the train split) as (N, 1, 8, 8) float64 x/16 - 0.5, int labels."""
    from skylark.data import load_dataset

    data = load_dataset("digits", "float64")
    return data.x_train, data.y_train


DYADIC_BITS = 7  # significant bits each parameter tensor keeps in dyadic_params


def dyadic_params(params: dict, bits: int = DYADIC_BITS) -> dict:
    """Each parameter tensor rounded to `bits` significant bits on its own power-of-two grid:
    v -> round(v * 2**e) / 2**e with e chosen per tensor so that max|v| * 2**e is in
    (2**(bits-1), 2**bits]. An all-zero tensor (a fresh bias) stays zero.

    Why: a tie is only a tie if every framework computes the tied values bit-identically.
    Measured: keras-torch's conv rounds identical input patches differently by position (in
    float64 too), so windows that numpy ties exactly come out an ulp apart there, its max-pool
    picks another winner and the pool's input gradient differs by O(1). That is rounding, not a
    different tie rule. With dyadic inputs (ties: +-0.5, one bit; digits: k/16 - 0.5, five bits)
    every product w*x is an integer multiple of 2**-(e+5) below 2**(bits+5) units, and a conv
    output sums C_in*kh*kw (<= 32 here) of them: < 2**17 units, exact in float32's 24-bit
    significand in ANY summation order. So tied windows tie exactly everywhere and the tie rule
    itself (the first maximum) is what is compared.

    Why per tensor: one global grid (multiples of 1/64, as before) rounded the Dense weights,
    N(0,1)/1352 ~ 1e-3, all to zero, and with them every tensor downstream of the pool's gradient,
    so the pool's tie routing was never compared. `skylark check --raw-weights` keeps the
    unrounded weights.
    """
    out = {}
    for k, v in params.items():
        v = np.asarray(v)
        top = float(np.abs(v).max(initial=0.0))
        if top == 0.0:
            out[k] = v.copy()
            continue
        e = bits - math.ceil(math.log2(top))
        out[k] = (np.round(v * 2.0**e) / 2.0**e).astype(v.dtype)
    return out


def all_zero(tensors: dict[str, np.ndarray]) -> list[str]:
    """Names of the tensors with no nonzero entry: comparing zeros to zeros proves nothing."""
    return [k for k, v in tensors.items() if not np.any(v)]


def dropout_masks(spec: list[dict], input_shape, batch: int, seed: int, step: int = 0,
                  geometry=None) -> dict[int, np.ndarray]:
    """The keep-mask of every dropout layer (layer index -> bool array of its input's shape,
    NCHW or flat in skylark's order; a stochastic depth's (N, 1, 1, 1) or (1, 1, 1, 1):
    Kind.mask_shape) for one batch: the same masks go to every framework, so a
    training pass compares exactly. Drawn from `np.random.default_rng((seed, step, i))`.
    `geometry` (reference.spec.geometry of the spec) saves rebuilding it on every step."""
    from .kinds import KINDS

    masked = [i for i, s in enumerate(spec) if KINDS[s["kind"]].uses_mask]
    if not masked:
        return {}
    if geometry is None:
        from .spec import geometry as spec_geometry

        geometry = spec_geometry(spec, input_shape)
    return {i: np.random.default_rng((seed, step, i)).random(KINDS[spec[i]["kind"]].mask_shape(
        spec[i], batch, geometry[i].in_shape)) >= spec[i]["p"] for i in masked}


def informative_state(spec: list[dict], state: dict, seed: int) -> dict:
    """`state` with every layer's uninformative initial state replaced by a random one
    (Kind.informative_state: e.g. BatchNorm's 1, 0, 0, 1, under which a swapped weight and bias
    or a missing copy of the running statistics would compare equal), from
    np.random.default_rng((seed, layer index))."""
    from .kinds import KINDS
    from .spec import node_names, node_of

    out = dict(state)
    for i, (s, name) in enumerate(zip(spec, node_names(spec), strict=True)):
        own = {k.rsplit(".", 1)[1]: v for k, v in state.items() if node_of(k) == name}
        if own:
            new = KINDS[s["kind"]].informative_state(s, own, np.random.default_rng((seed, i)))
            out.update({f"{name}.{k}": v for k, v in new.items()})
    return out
