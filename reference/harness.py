"""The equivalence harness: run one batch through every framework, compare every tensor to numpy.

    report = run_check(["torch", "keras-jax"], dtype="float32", input_kind="ties")
    report["frameworks"]["torch"]["first_forward"]    # None, or the first diverging tensor

What is compared (names from reference.runners.runner): every layer output, the loss, and for two
backward passes (from the mean loss, and from a random cotangent on the logits) every layer
output's gradient, every parameter gradient and the input gradient, all in skylark's layout.
The bars (reference.budgets, docs/design.md), max|a - b| never signed: float64 1e-10 relative to
max(1, max|b|); float32 a derived rounding budget per tensor. A tensor with the wrong shape or
dtype (a silent float32 inside a float64 run) fails outright.

What each proves: float64 (1e-10) is the gate that proves the math is the same. The float32
budget is a worst-case rounding bound that catches layout/semantic bugs and gross numeric errors,
not small numeric ones. Measured (tests/test_budgets.py): a Dense weight scaled by 1 + 1e-2 fails
float32 at out.3, by 1 + 1e-4 still fails (at cot/d.out.2), by 1 + 1e-6 passes; a Dense bias off
by 1e-3 * max|logit| passes on the random and ties inputs. The measured float32 error is
reported beside the budget.
"""

from __future__ import annotations

import math
import os
import platform
import sys

import numpy as np

import skylark as sk

from .budgets import F64_RTOL, K_SAFETY, budgets
from .frameworks import COMPARED, NAMES
from .inputs import (
    DYADIC_BITS,
    all_zero,
    dropout_masks,
    dyadic_params,
    informative_state,
    make_batch,
)
from .runners.numpy_ref import NumpyRunner
from .runners.runner import FrameworkUnavailable, loss_options
from .runners.startup import StartTimeout, Startup
from .spec import buffer_names, describe, node_names, node_of, param_shapes, shapes

# --- which tensors, in which order --------------------------------------------------------------


def tensor_order(spec: list[dict], training: bool = True) -> dict[str, list[str]]:
    """{"forward": [out.0, ..., loss, stat...], "loss": [...], "cot": [...]} in computation
    order; the updated running statistics (stat.{i}.{buffer}) come with a training forward.

    A backward pass runs from the logits down, node by node in reverse: d.out.{n}, node n's
    parameter gradients, then the node before ... and finally d.input.
    """
    nodes = node_names(spec)
    pnames = list(param_shapes(spec))
    stats = [f"stat.{b}" for b in buffer_names(spec)] if training else []
    order = {"forward": [f"out.{n}" for n in nodes] + ["loss", *stats]}
    for tag in ("loss", "cot"):
        names = []
        for n in reversed(nodes):
            names.append(f"{tag}/d.out.{n}")
            names += [f"{tag}/d.{p}" for p in pnames if node_of(p) == n]
        order[tag] = [*names, f"{tag}/d.input"]
    return order


# --- comparing --------------------------------------------------------------------------------


def _row(tensor: str, b: np.ndarray, a, budget: float) -> dict:
    """One tensor compared: {tensor, max_abs, rel, budget, ok, note}."""
    row = {"tensor": tensor, "max_abs": None, "rel": None, "budget": budget, "ok": False,
           "note": ""}
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
        row["ok"] = bool(err <= budget) and math.isfinite(err)  # False for a nan budget
        if budget == math.inf:
            # the derived float32 bound outgrew float64's range (|W| products through a deep
            # graph: torchvision's mobilenet_v3_small and efficientnet_b0); it is still a
            # bound, larger than any float, so every finite error is within it, and the
            # tensor is listed as uninformative. A nan budget stays a failure.
            row["note"] = "budget overflowed: any finite error is within it"
        elif not math.isfinite(budget):
            row["note"] = "budget not finite"
        if a.dtype != b.dtype:
            row["ok"], row["note"] = False, f"dtype {a.dtype} != {b.dtype}"
    return row


FORWARD_ONLY = "not computed (forward-only)"
# A budget above this share of the tensor's own magnitude cannot tell a correct result from an
# O(1) bug: reported with the check (float32 budgets on deep graphs; docs/design.md section 9).
UNINFORMATIVE = 0.01


def uninformative(rows, ref: dict) -> list[str]:
    """The compared tensors whose budget exceeds UNINFORMATIVE times their largest value."""
    return [r["tensor"] for r in rows if r["ok"] is not None and r["budget"] >
            UNINFORMATIVE * float(np.abs(ref[r["tensor"]]).max(initial=0.0))]


def _not_computed(tensor: str, budget: float) -> dict:
    """The row of a gradient a forward-only runtime does not compute: neither passed nor failed
    (ok None) and not missing."""
    return {"tensor": tensor, "max_abs": None, "rel": None, "budget": budget, "ok": None,
            "note": FORWARD_ONLY}


def compare_tensors(framework: str, ref: dict, got: dict, budget: dict, order: dict,
                    gradients: bool = True) -> dict:
    """Rows {tensor, max_abs, rel, budget, ok, note} in order, and the first divergences.
    `gradients` False (a forward-only runtime: Runner.supports_gradients): the backward passes'
    rows say FORWARD_ONLY with ok None, and only the forward part decides the status."""
    rows = [_row(t, ref[t], got.get(t), budget[t]) if gradients or part == "forward"
            else _not_computed(t, budget[t]) for part, names in order.items() for t in names]
    by_name = {r["tensor"]: r for r in rows}

    def first(part):
        return next((t for t in order[part] if by_name[t]["ok"] is False), None)

    def used(r):  # the share of its budget a tensor used
        if r["budget"]:
            return r["max_abs"] / r["budget"]
        return math.inf if r["max_abs"] else 0.0

    return {
        "framework": framework,
        "status": "ok" if all(r["ok"] is not False for r in rows) else "FAIL",
        "forward_only": not gradients,
        "rows": rows,
        "first_forward": first("forward"),
        "first_backward": {"loss": first("loss"), "cot": first("cot")},
        "worst": max((r for r in rows if r["max_abs"] is not None), key=used, default=None),
        "uninformative": uninformative(rows, ref),
    }


# --- a whole check ----------------------------------------------------------------------------


class Case:
    """One model, one batch, one dtype and mode: numpy's tensors and the budgets, computed once.

    `state`: parameters and buffers; `training`: the mode of BatchNorm2d and Dropout (the
    keep-masks of every dropout layer default to `dropout_masks` of the batch, seed 0);
    `loss`: softmax_cross_entropy's options."""

    def __init__(self, spec, state, dtype, input_shape, x, labels, cotangent, *,
                 training: bool = True, masks=None, loss=None) -> None:
        self.spec, self.dtype, self.input_shape = spec, np.dtype(dtype).name, tuple(input_shape)
        self.state = {k: np.asarray(v, self.dtype) for k, v in state.items()}
        self.x, self.labels, self.cotangent = x, labels, cotangent
        self.training, self.loss = training, loss_options(loss)
        if masks is None and training:
            masks = dropout_masks(spec, self.input_shape, len(x), seed=0)
        self.masks = masks or {}
        ref = NumpyRunner()
        ref.setup(spec, self.state, self.dtype, self.input_shape, loss=self.loss)
        self.ref = ref.trace(x, labels, cotangent, **self.trace_kwargs())
        self.order = tensor_order(spec, training)
        self.budget = budgets(spec, self.state, self.input_shape, x, cotangent, self.ref,
                              self.dtype, training=training, masks=self.masks, loss=self.loss)

    @classmethod
    def from_model(cls, model: sk.Graph, input_kind="random", batch=4, seed=0,
                   dtype="float32", input_shape=(1, 28, 28), dyadic: bool = False,
                   informative: bool = True, **mode):
        """`informative`: replace initial states that would hide bugs (BatchNorm's 1, 0, 0, 1)
        by random ones (reference.inputs.informative_state); `mode`: training, masks, loss (as
        the constructor's)."""
        spec = describe(model)
        k = shapes(spec, input_shape)[-1][0]
        x, labels, cot = make_batch(input_kind, batch, input_shape, k, seed, dtype)
        state = informative_state(spec, model.state(), seed) if informative else model.state()
        state = dyadic_params(state) if dyadic else state
        if mode.get("training", True) and mode.get("masks") is None:
            mode["masks"] = dropout_masks(spec, input_shape, batch, seed)
        return cls(spec, state, dtype, input_shape, x, labels, cot, **mode)

    def setup_args(self):
        return self.spec, self.state, self.dtype, self.input_shape

    def batch(self):
        return self.x, self.labels, self.cotangent

    def trace_kwargs(self) -> dict:
        return {"training": self.training, "masks": self.masks}

    def compare(self, framework: str, got: dict, gradients: bool = True) -> dict:
        return compare_tensors(framework, self.ref, got, self.budget, self.order, gradients)


def trace_all(runners: dict, case: Case, done=None) -> dict[str, dict | Exception]:
    """Every runner's `trace` for `case`; subprocess workers run while in-process ones do.
    `done(name, result)`, if given, is called as each result arrives."""
    results, remote = _Results(done), []
    for name, r in runners.items():
        if hasattr(r, "submit"):
            try:
                r.submit("setup_trace", *case.setup_args(), *case.batch(),
                         setup={"loss": case.loss}, trace=case.trace_kwargs())
                remote.append(name)
            except Exception as e:  # a worker that died or timed out since it started
                results[name] = e
    for name, r in runners.items():
        if name not in remote and name not in results:
            try:
                r.setup(*case.setup_args(), loss=case.loss)
                results[name] = r.trace(*case.batch(), **case.trace_kwargs())
            except Exception as e:  # reported per framework, the others still run
                results[name] = e
    for name in remote:
        try:
            results[name] = runners[name].result()
        except Exception as e:
            results[name] = e
    return dict(results)


class _Results(dict):
    """trace_all's results, passing each one to `done` as it is stored."""

    def __init__(self, done) -> None:
        super().__init__()
        self.done = done

    def __setitem__(self, name, result) -> None:
        super().__setitem__(name, result)
        if self.done:
            self.done(name, result)


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
    # hasattr: a framework whose import hung (reference.runners.startup) is in sys.modules
    # half-built
    torch, tf = sys.modules.get("torch"), sys.modules.get("tensorflow")
    if hasattr(torch, "get_num_threads"):
        fp["torch_threads"] = torch.get_num_threads()
    if hasattr(tf, "config"):
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
    return sk.skylark_cnn(input_shape, seed=seed, dtype=dtype), input_shape


def _log(msg: str) -> None:
    sys.stderr.write(msg + "\n")  # one write: start-up threads log too, lines stay whole
    sys.stderr.flush()


def _checked_names(frameworks) -> list[str]:
    given = list(COMPARED if frameworks is None else frameworks)
    for f in given:
        if f not in NAMES:
            raise ValueError(f"unknown framework. Expected one of {NAMES}. Received: {f!r}")
    names = [f for f in dict.fromkeys(given) if f != "numpy"]
    if not names:  # else all([]) would pass with nothing checked
        raise ValueError("numpy is the reference; name at least one other framework. "
                         f"Received: {given}")
    return names


def _config(case: Case, names, input_kind, batch, seed, dyadic) -> dict:
    return {
        "frameworks": names, "dtype": case.dtype, "input": input_kind, "batch": batch,
        "seed": seed, "input_shape": list(case.input_shape), "spec": case.spec,
        "weights": (f"rounded to {DYADIC_BITS} significant bits per tensor" if dyadic
                    else "as initialized"),
        "mode": "train" if case.training else "eval", "loss": case.loss,
        "k_safety": K_SAFETY, "f64_rtol": F64_RTOL,
        "all_zero_reference": all_zero(case.ref),  # compared, but such a match proves nothing
    }


def start_runners(names, runners, plants, report, log) -> tuple[dict, dict]:
    """(active, own): the runners to use, reusing `runners` and starting the others, all at
    once in the background (reference.runners.startup: a line per framework, a deadline each); a
    framework that cannot start is recorded in report["frameworks"] as MISSING or ERROR."""
    own, active = {}, {}
    new = [f for f in names if not (runners and f in runners)]
    starting = Startup(new, plants, log=log) if new else None
    for f in names:
        if f not in new:
            active[f] = runners[f]
            continue
        try:
            active[f] = own[f] = starting.result(f)
        except FrameworkUnavailable as e:
            report[f] = {"framework": f, "status": "MISSING", "reason": e.reason}
            log(f"skylark check: {f} is MISSING: {e.reason}")
        except Exception as e:  # installed but failed to start: ERROR, the others still run
            reason = f"{type(e).__name__}: {e}"
            report[f] = {"framework": f, "status": "ERROR", "reason": reason}
            if not isinstance(e, StartTimeout):  # that one was said when it happened
                log(f"skylark check: {f} failed to start: {reason}")
        except BaseException:  # Ctrl-C: close the workers that are up
            starting.close_started()
            raise
    return active, own


def _said(r: dict) -> str:
    """The rest of run_check's one line per framework: its worst tensor, or what went wrong."""
    if r["status"] == "ERROR":
        return f": {r['reason']}"

    def num(v):
        return f"{v:.2e}" if isinstance(v, (int, float)) else str(v)

    fb, w = r.get("first_backward") or {}, r.get("worst")
    first = ("" if r["status"] == "ok" else f", first diverging: forward {r['first_forward']}, "
             f"loss pass {fb.get('loss')}, cotangent pass {fb.get('cot')}")
    return first + (f", worst {w['tensor']} {num(w['max_abs'])} of budget {num(w['budget'])}"
                    if w else "")


def run_check(frameworks=None, dtype="float32", input_kind="random", batch=4, seed=0,
              model=None, input_shape=None, runners=None, plants=None, log=None,
              dyadic: bool | None = None, training: bool = True, loss=None) -> dict:
    """Compare `frameworks` (default: all but numpy) against numpy on one batch.

    `dyadic` (default: on for the ties, digits and kinks inputs, whose pool windows tie) rounds each
    parameter tensor to DYADIC_BITS significant bits so that ties are exact in every framework
    (reference.inputs.dyadic_params).

    Returns {"ok", "frameworks": {name: compare_tensors() result, or {"status": "MISSING" or
    "ERROR", "reason"}}, "fingerprint", "config"}. `runners` (name -> Runner) reuses started
    runners and leaves them open; `plants` (name -> plant) is the test-only bug hook;
    `training` the mode (BatchNorm2d, Dropout), `loss` softmax_cross_entropy's options.
    """
    log = log or _log
    names = _checked_names(frameworks)
    if model is None:
        model, input_shape = default_model(input_kind, dtype, seed)
    dyadic = input_kind in ("ties", "digits", "kinks") if dyadic is None else dyadic
    case = Case.from_model(model, input_kind, batch, seed, dtype,
                           tuple(input_shape or (1, 28, 28)), dyadic, training=training,
                           loss=loss)
    report = {"frameworks": {}, "config": _config(case, names, input_kind, batch, seed, dyadic)}
    if report["config"]["all_zero_reference"]:
        log("skylark check: WARNING: numpy's tensors "
            f"{', '.join(report['config']['all_zero_reference'])} are all zero; matching them "
            "proves nothing")
    active, own = start_runners(names, runners, plants, report["frameworks"], log)
    try:
        if active:
            log(f"skylark check: running {', '.join(active)} ({case.dtype}, {input_kind}, "
                f"batch {batch})")
        def done(f, got):  # compared, and said, as soon as each framework's tensors arrive
            r = report["frameworks"][f] = (
                {"framework": f, "status": "ERROR", "reason": f"{type(got).__name__}: {got}"}
                if isinstance(got, Exception)
                else case.compare(f, got, getattr(active[f], "supports_gradients", True)))
            log(f"skylark check: {f} {r['status']}" + _said(r))

        trace_all(active, case, done)
        report["fingerprint"] = fingerprint(active, case.dtype)
    finally:
        for r in own.values():
            r.close()
    report["frameworks"] = {f: report["frameworks"][f] for f in names}
    report["ok"] = all(v["status"] == "ok" for v in report["frameworks"].values())
    return report
