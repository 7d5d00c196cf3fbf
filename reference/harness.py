"""The equivalence harness: run one batch through every framework, compare every tensor to numpy.

    report = run_check(["torch", "keras-jax"], dtype="float32", input_kind="ties")
    report["frameworks"]["torch"]["first_forward"]    # None, or the first diverging tensor

What is compared (names from reference.runners): every layer output, the loss, and for two
backward passes (from the mean loss, and from a random cotangent on the logits) every layer
output's gradient, every parameter gradient and the input gradient, all in skylark's layout.

Tolerances (DESIGN.md "What equal means"), max|a - b| never signed:
- float64: max|a - b| <= 1e-10 * max(1, max|b|).
- float32: the budget derived in `float32_budgets` (k * eps32 * n_reduce * magnitude).
A tensor with the wrong shape or dtype (a silent float32 inside a float64 run) fails outright.

What each proves: float64 (1e-10) is the gate that proves the math is the same. The float32
budget is a worst-case rounding bound that catches layout/semantic bugs and gross numeric errors,
not small numeric ones. Measured (tests/test_check.py): a Dense weight scaled by 1 + 1e-2 fails
float32 at out.3, by 1 + 1e-4 still fails (at cot/d.out.2), by 1 + 1e-6 passes; a Dense bias off
by 1e-3 * max|logit| passes on the random and ties inputs. The measured float32 error is
reported beside the budget.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time

import numpy as np

import skylark as sk

from .runners import FRAMEWORKS, FrameworkUnavailable, NumpyRunner, get_runner
from .spec import build, describe, param_shapes, shapes

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: the spacing of float32 at 1
K_SAFETY = 2  # see float32_budgets
F64_RTOL = 1e-10
INPUTS = ("random", "ties", "digits")


# --- inputs -----------------------------------------------------------------------------------


def make_batch(kind: str, batch: int, input_shape, num_classes: int, seed: int, dtype: str):
    """(x NCHW, labels, cotangent) for one batch, from `np.random.default_rng(seed)`.

    random: uniform [-0.5, 0.5]. ties: a constant -0.5 background with a few +0.5 strokes, so
    most pool windows tie (with a bias-free conv the whole conv output is constant there).
    digits: scikit-learn's 8x8 digits scaled x/16 - 0.5 (needs input_shape (1, 8, 8)).
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


def _digits():
    """scikit-learn's digits (the train split) as (N, 1, 8, 8) float64 x/16 - 0.5, int labels."""
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


# --- which tensors, in which order --------------------------------------------------------------


def tensor_order(spec: list[dict]) -> dict[str, list[str]]:
    """{"forward": [out.0, ..., loss], "loss": [...], "cot": [...]} in computation order.

    A backward pass runs from the logits down: d.out.{i}, layer i's parameter gradients, then
    d.out.{i-1} ... and finally d.input.
    """
    n = len(spec)
    pnames = list(param_shapes(spec))
    order = {"forward": [f"out.{i}" for i in range(n)] + ["loss"]}
    for tag in ("loss", "cot"):
        names = []
        for i in reversed(range(n)):
            names.append(f"{tag}/d.out.{i}")
            names += [f"{tag}/d.{p}" for p in pnames if p.split(".")[0] == str(i)]
        order[tag] = [*names, f"{tag}/d.input"]
    return order


# --- tolerances ---------------------------------------------------------------------------------


def float64_budgets(ref: dict[str, np.ndarray]) -> dict[str, float]:
    """float64: 1e-10 * max(1, max|b|) for every tensor b of numpy's."""
    return {k: F64_RTOL * max(1.0, float(np.abs(v).max(initial=0.0))) for k, v in ref.items()}


def float32_budgets(spec, params, input_shape, x, labels, cotangent) -> dict[str, float]:
    """Per-tensor float32 budget: K_SAFETY * eps32 * n_reduce(T) * magnitude(T).

    Derivation. A float32 dot product of length n computed in ANY order (BLAS blocking, oneDNN,
    Eigen, XLA) is within gamma_n * sum|a_i b_i| of the exact one, gamma_n ~ n*u, u = eps32/2;
    two implementations are therefore within n*eps32*sum|a_i b_i| of each other. Errors
    already in a layer's input pass through it scaled by |W| (conv, dense) or not at all
    (ReLU, max-pool and flatten are 1-Lipschitz), so by induction the error in tensor T is
    bounded elementwise by eps32 * n_reduce(T) * M(T), where
      - M(T) is T computed on absolute values: |x| and |W| through the same layers (max of
        |.| for pools), and for gradients |W|^T G, G^T |x| with numpy's pool/ReLU routing, all
        in float64 (`M` bounds every sum |a_i b_i| that feeds T);
      - n_reduce(T) is the sum of the reduction lengths on the path to T: + C_in*kh*kw (+1 for
        a bias) per conv, + in_features (+1) per dense forward; + C_out*kh*kw per conv input
        gradient, + out_features per dense one, + ceil(kh/sh)*ceil(kw/sw) per max-pool one;
        a weight gradient adds batch*H_out*W_out (conv) or batch (dense) and both the output
        gradient's and the input activation's n_reduce; the loss adds K (logsumexp) and
        dlogits = (softmax - onehot)/N inherits the logits' count with magnitude 1/N.
    K_SAFETY = 2 covers the roundings that are not reductions (bias add, exp/log in the loss,
    the 1/N, second-order terms); it is not a fudge for observed errors, which sit far below.
    Not covered, deliberately: a max-pool argmax or ReLU mask flipping because two values lie
    within rounding of each other; that is a real divergence and is reported as one.
    """
    x = np.asarray(x, np.float64)
    cot = np.asarray(cotangent, np.float64)
    real = build(spec, "float64")
    real.load_params({k: np.asarray(v, np.float64) for k, v in params.items()})
    absm = build(spec, "float64")
    absm.load_params({k: np.abs(np.asarray(v, np.float64)) for k, v in params.items()})
    real.forward(x)  # numpy's routing (pool argmax, ReLU masks) for the backward magnitudes
    batch = x.shape[0]
    out_shapes = shapes(spec, input_shape)
    in_shapes = [tuple(input_shape), *out_shapes[:-1]]

    a, n = np.abs(x), 0
    fwd_a, fwd_n, budget = [], [], {}
    for i, (s, layer) in enumerate(zip(spec, absm, strict=True)):
        a = layer.forward(a)  # conv/dense: |W| a + |b|; pool: max of a; relu: a (a >= 0)
        if s["kind"] == "conv2d":
            kh, kw = s["kernel_size"]
            n += s["in_channels"] * kh * kw + int(s["bias"])
        elif s["kind"] == "dense":
            n += s["in_features"] + int(s["bias"])
        fwd_a.append(a)
        fwd_n.append(n)
        budget[f"out.{i}"] = _b32(n, a)
    k = out_shapes[-1][0]
    m_logits = float(fwd_a[-1].max())
    budget["loss"] = _b32(fwd_n[-1] + k, 2 * (m_logits + math.log(k)))

    for tag in ("loss", "cot"):
        if tag == "loss":
            g, n = np.full((batch, k), max(m_logits, 1.0) / batch), fwd_n[-1] + k
        else:
            g, n = np.abs(cot), 0
        absm.zero_grad()
        for i in reversed(range(len(spec))):
            s = spec[i]
            budget[f"{tag}/d.out.{i}"] = _b32(n, g)
            n_in = fwd_n[i - 1] if i else 0  # the error already in this layer's input
            if s["kind"] in ("conv2d", "dense"):
                layer = absm[i]
                g_in = layer.backward(g)  # |W|^T g, and g^T |x| into layer.grads
                if s["kind"] == "conv2d":
                    kh, kw = s["kernel_size"]
                    _, ho, wo = out_shapes[i]
                    n_w, n_x = batch * ho * wo, s["out_channels"] * kh * kw
                else:
                    n_w, n_x = batch, s["out_features"]
                budget[f"{tag}/d.{i}.weight"] = _b32(n + n_in + n_w, layer.grads["weight"])
                if s["bias"]:
                    budget[f"{tag}/d.{i}.bias"] = _b32(n + n_w, layer.grads["bias"])
                n += n_x
            else:
                g_in = real[i].backward(g)  # numpy's own routing / mask / reshape
                if s["kind"] == "maxpool2d":
                    (kh, kw), (sh, sw) = s["kernel_size"], s["stride"]
                    n += -(-kh // sh) * -(-kw // sw)
            assert g_in.shape[1:] == in_shapes[i], (g_in.shape, in_shapes[i])
            g = g_in
        budget[f"{tag}/d.input"] = _b32(n, g)
    return budget


def _b32(n_reduce: int, magnitude) -> float:
    return K_SAFETY * EPS32 * n_reduce * float(np.max(magnitude, initial=0.0))


def budgets(spec, params, input_shape, x, labels, cotangent, ref, dtype) -> dict[str, float]:
    if np.dtype(dtype) == np.float64:
        return float64_budgets(ref)
    return float32_budgets(spec, params, input_shape, x, labels, cotangent)


# --- comparing --------------------------------------------------------------------------------


def compare(framework: str, ref: dict, got: dict, budget: dict, order: dict) -> dict:
    """Rows {tensor, max_abs, rel, budget, ok, note} in order, and the first divergences."""
    rows = []
    for tensor in [t for part in order.values() for t in part]:
        b = ref[tensor]
        row = {"tensor": tensor, "max_abs": None, "rel": None, "budget": budget[tensor],
               "ok": False, "note": ""}
        a = got.get(tensor)
        if a is None:
            row["note"] = "missing"
        elif np.shape(a) != np.shape(b):
            row["note"] = f"shape {np.shape(a)} != numpy's {np.shape(b)}"
        else:
            a = np.asarray(a)
            err = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0.0))
            scale = float(np.abs(b).max(initial=0.0))
            row["max_abs"] = err
            row["rel"] = err / scale if scale else (0.0 if err == 0 else math.inf)
            row["ok"] = bool(err <= budget[tensor])  # False for nan
            if a.dtype != b.dtype:
                row["ok"], row["note"] = False, f"dtype {a.dtype} != {b.dtype}"
        rows.append(row)
    by_name = {r["tensor"]: r for r in rows}

    def first(part):
        return next((t for t in order[part] if not by_name[t]["ok"]), None)

    return {
        "framework": framework,
        "status": "ok" if all(r["ok"] for r in rows) else "FAIL",
        "rows": rows,
        "first_forward": first("forward"),
        "first_backward": {"loss": first("loss"), "cot": first("cot")},
        "worst": max(
            (r for r in rows if r["max_abs"] is not None),
            key=lambda r: (r["max_abs"] / r["budget"]) if r["budget"] else
            (math.inf if r["max_abs"] else 0.0),
            default=None,
        ),
    }


# --- a whole check ----------------------------------------------------------------------------


class Case:
    """One model, one batch, one dtype: numpy's tensors and the budgets, computed once."""

    def __init__(self, spec, params, dtype, input_shape, x, labels, cotangent) -> None:
        self.spec, self.dtype, self.input_shape = spec, np.dtype(dtype).name, tuple(input_shape)
        self.params = {k: np.asarray(v, self.dtype) for k, v in params.items()}
        self.x, self.labels, self.cotangent = x, labels, cotangent
        ref = NumpyRunner()
        ref.setup(spec, self.params, self.dtype, self.input_shape)
        self.ref = ref.collect(x, labels, cotangent)
        self.order = tensor_order(spec)
        self.budget = budgets(spec, self.params, self.input_shape, x, labels, cotangent,
                              self.ref, self.dtype)

    @classmethod
    def from_model(cls, model: sk.Sequential, input_kind="random", batch=4, seed=0,
                   dtype="float32", input_shape=(1, 28, 28), dyadic: bool = False):
        spec = describe(model)
        k = shapes(spec, input_shape)[-1][0]
        x, labels, cot = make_batch(input_kind, batch, input_shape, k, seed, dtype)
        params = dyadic_params(model.params()) if dyadic else model.params()
        return cls(spec, params, dtype, input_shape, x, labels, cot)

    def args(self):
        return (self.spec, self.params, self.dtype, self.input_shape,
                self.x, self.labels, self.cotangent)

    def compare(self, framework: str, got: dict) -> dict:
        return compare(framework, self.ref, got, self.budget, self.order)


def collect_all(runners: dict, case: Case) -> dict[str, dict | Exception]:
    """Every runner's `collect` for `case`; subprocess workers run while in-process ones do."""
    results, remote = {}, []
    for name, r in runners.items():
        if hasattr(r, "submit"):
            try:
                r.submit("setup_collect", *case.args())
                remote.append(name)
            except Exception as e:  # a worker that died or timed out since it started
                results[name] = e
    for name, r in runners.items():
        if name not in remote and name not in results:
            try:
                r.setup(*case.args()[:4])
                results[name] = r.collect(*case.args()[4:])
            except Exception as e:  # reported per framework, the others still run
                results[name] = e
    for name in remote:
        try:
            results[name] = runners[name].result()
        except Exception as e:
            results[name] = e
    return results


def fingerprint(runners: dict, dtype: str) -> dict:
    """Library versions, dtype, threads and platform: report it with every result."""
    fp = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "dtype": dtype,
        "numpy": np.__version__, "skylark": sk.__version__,
        "env": {k: os.environ[k] for k in (
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES",
        ) if k in os.environ},
        "frameworks": {},
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        fp["torch_threads"] = torch.get_num_threads()
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        fp["tf_threads"] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    for name, r in runners.items():
        try:
            fp["frameworks"][name] = r.versions()
        except Exception as e:
            fp["frameworks"][name] = {"error": str(e)}
    return fp


def default_model(input_kind: str, dtype: str, seed: int = 0):
    """The Skylark net for this input: (1, 8, 8) for digits, else (1, 28, 28)."""
    input_shape = (1, 8, 8) if input_kind == "digits" else (1, 28, 28)
    return sk.skylark_cnn(input_shape=input_shape, seed=seed, dtype=dtype), input_shape


def run_check(frameworks=None, dtype="float32", input_kind="random", batch=4, seed=0,
              model=None, input_shape=None, runners=None, plants=None, log=None,
              dyadic: bool | None = None) -> dict:
    """Compare `frameworks` (default: all but numpy) against numpy on one batch.

    `dyadic` (default: on for the ties and digits inputs, whose pool windows tie) rounds each
    parameter tensor to DYADIC_BITS significant bits so that ties are exact in every framework
    (dyadic_params).

    Returns {"ok", "frameworks": {name: compare() result, or {"status": "MISSING"/"ERROR",
    "reason"}}, "fingerprint", "config"}. `runners` (name -> Runner) reuses started runners and
    leaves them open; `plants` (name -> plant) is the test-only bug hook of get_runner.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    given = list(FRAMEWORKS if frameworks is None else frameworks)
    for f in given:
        if f not in FRAMEWORKS:
            raise ValueError(f"unknown framework. Expected one of {FRAMEWORKS}. Received: {f!r}")
    names = [f for f in dict.fromkeys(given) if f != "numpy"]
    if not names:  # else all([]) would pass with nothing checked
        raise ValueError("numpy is the reference; name at least one other framework. "
                         f"Received: {given}")
    if model is None:
        model, input_shape = default_model(input_kind, dtype, seed)
    input_shape = tuple(input_shape or (1, 28, 28))
    if dyadic is None:
        dyadic = input_kind in ("ties", "digits")
    case = Case.from_model(model, input_kind, batch, seed, dtype, input_shape, dyadic)
    report = {"frameworks": {}, "config": {
        "frameworks": names, "dtype": case.dtype, "input": input_kind, "batch": batch,
        "seed": seed, "input_shape": list(input_shape), "spec": case.spec,
        "weights": (f"rounded to {DYADIC_BITS} significant bits per tensor" if dyadic
                    else "as initialized"),
        "k_safety": K_SAFETY, "f64_rtol": F64_RTOL,
        "all_zero_reference": all_zero(case.ref),  # compared, but such a match proves nothing
    }}
    if report["config"]["all_zero_reference"]:
        log("skylark check: WARNING: numpy's tensors "
            f"{', '.join(report['config']['all_zero_reference'])} are all zero; matching them "
            "proves nothing")
    own, active = {}, {}
    try:
        for f in names:
            if runners and f in runners:
                active[f] = runners[f]
                continue
            t0 = time.perf_counter()
            try:
                active[f] = own[f] = get_runner(f, plant=(plants or {}).get(f))
            except FrameworkUnavailable as e:
                report["frameworks"][f] = {"framework": f, "status": "MISSING",
                                           "reason": e.reason}
                log(f"skylark check: {f} is MISSING: {e.reason}")
                continue
            except Exception as e:  # installed but failed to start: ERROR, the others still run
                reason = f"{type(e).__name__}: {e}"
                report["frameworks"][f] = {"framework": f, "status": "ERROR", "reason": reason}
                log(f"skylark check: {f} failed to start: {reason}")
                continue
            if time.perf_counter() - t0 > 1:
                log(f"skylark check: {f} ready ({time.perf_counter() - t0:.1f} s)")
        if active:
            log(f"skylark check: running {', '.join(active)} ({case.dtype}, {input_kind}, "
                f"batch {batch})")
        for f, got in collect_all(active, case).items():
            if isinstance(got, Exception):
                report["frameworks"][f] = {"framework": f, "status": "ERROR",
                                           "reason": f"{type(got).__name__}: {got}"}
            else:
                report["frameworks"][f] = case.compare(f, got)
        report["fingerprint"] = fingerprint(active, case.dtype)
    finally:
        for r in own.values():
            r.close()
    report["frameworks"] = {f: report["frameworks"][f] for f in names}
    report["ok"] = all(v["status"] == "ok" for v in report["frameworks"].values())
    return report
