"""One fuzz case through `skylark check`'s machinery, against every started framework.

    oracle = Oracle(["torch", "jax"])        # starts them once; reused for every case
    verdict = oracle.run(plan, index=7)      # {"status": "pass" | "fail" | "known" | ...}
    oracle.close()

The case is built as `skylark check --model repro.json` builds it (from_config with the case's
seed and dtype, then the reference's geometry), then reference.harness.run_check compares every
forward tensor, the loss, both backward passes and the running statistics of each framework
with numpy's within reference.budgets' bars. Verdict statuses:

- pass: every framework ok, the finite differences (where sampled) too, and skylark's own
  config round trip (the model rebuilt from its to_config, given its state, computes the same
  logits: a layer whose config() forgets an argument would otherwise hide, since the
  references are built from that config as well; an argument the generator left out is
  compared with torch's and Keras' documented default, DEFAULTS), and, every REUSE_EVERY-th
  case, the same model objects run again at another batch size and block budget give what a
  fresh copy gives (a plan cache keyed on too little); and, where the references can mirror
  the model, the checker fails errors planted above its bar (plant.py) and every activation
  element matches Python's math within its own ulps (ulp.py);
- fail: a new divergence, one `failures` entry per framework ({framework, signature, detail});
- known: every failure is in reference.fuzz.known (listed in `known`, never a pass);
- inexpressible: skylark builds it but the reference frameworks cannot mirror it (`reason`);
  numpy's own oracles (config round trip, finite differences) still ran on it and passed;
- invalid: skylark cannot build the plan (a generator bug; `reason`).

A framework that fails to start is never run and never counted as passing: `missing` lists it.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from skylark.models import from_config, to_config

from ..harness import Case, run_check, start_runners
from ..spec import describe, geometry
from . import known
from .data import idx_failures
from .fd import fd_failures
from .knobs import small_blocks
from .plan import Invalid, build_layers
from .plant import plant_failures
from .resume import checkpoint_failures
from .signature import describe_tensor, signature
from .train import lockstep_failures
from .ulp import ulp_failures

FD_EVERY = 4  # finite differences on every 4th float64 random-input case
REUSE_EVERY = 3  # the same model objects run again, at another batch size: every 3rd case


class Oracle:
    """Started runners for `frameworks` (numpy is the reference, always) and the case runner.
    `fd`: also run the finite-difference oracle on a sample of the cases."""

    def __init__(self, frameworks, *, fd: bool = True, log=None) -> None:
        self.log = log or (lambda msg: None)
        self.fd = fd
        self.unavailable: dict[str, dict] = {}
        self.runners, self._own = start_runners(list(frameworks), None, None,
                                                self.unavailable, self.log)
        self.frameworks = [f for f in frameworks if f in self.runners]

    def close(self) -> None:
        for r in self._own.values():
            r.close()
        self._own = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _restart(self, name: str) -> None:
        """A framework that errored may have lost its worker: start it afresh."""
        old = self._own.pop(name, None)
        if old is not None:
            try:
                old.close()
            except Exception:  # a worker that already died
                pass
        report: dict = {}
        active, own = start_runners([name], None, None, report, self.log)
        self.runners.pop(name, None)
        self.runners.update(active)
        self._own.update(own)

    def run(self, plan: dict, index: int = 0, frameworks=None) -> dict:
        """The verdict on `plan` (see the module docstring); `frameworks` narrows the set."""
        with small_blocks(plan):
            try:
                return self._run(plan, index, frameworks)
            except Exception as e:  # skylark crashed building or running it: a finding
                return {"index": index, "status": "fail", "known": [], "fd": False,
                        "frameworks": list(frameworks or self.frameworks), "failures": [{
                            "framework": "numpy", "detail": f"{type(e).__name__}: {e}",
                            "signature": f"numpy ERROR: {type(e).__name__}"}]}

    def _run(self, plan: dict, index: int, frameworks) -> dict:
        t0 = time.perf_counter()
        names = [f for f in (frameworks or self.frameworks) if f in self.runners]
        verdict = {"index": index, "status": "pass", "failures": [], "known": [],
                   "frameworks": names, "fd": False}
        try:
            layers = build_layers(plan)
        except Invalid as e:
            return {**verdict, "status": "invalid", "reason": str(e)}
        model = from_config(layers, dtype=plan["dtype"], seed=plan["seed"])
        failures = _round_trip(plan, layers, model)
        if index % REUSE_EVERY == 0:
            failures += _reused(plan, layers, model)
        if self.fd and _fd_sampled(plan, index):
            verdict["fd"] = True
            failures += _fd(plan, layers, index)
        failures += _files(plan, layers)
        try:
            geometry(describe(model), plan["input_shape"])
        except ValueError as e:  # numpy's own oracles above still ran
            verdict["reason"] = str(e)
        else:
            failures += _numpy_case(plan, model, index)
            failures += self._compare(plan, model, layers, names) if names else []
            failures += self._train(plan, layers, names, verdict) if plan.get("train") else []
        for f in failures:
            kid = known.match(plan, layers, f)
            (verdict["known"] if kid else verdict["failures"]).append({**f, "known": kid})
        verdict["status"] = ("fail" if verdict["failures"] else
                             "known" if verdict["known"] else
                             "inexpressible" if "reason" in verdict else "pass")
        verdict["seconds"] = time.perf_counter() - t0
        return verdict

    def _compare(self, plan, model, layers, names) -> list[dict]:
        try:
            return self._check(plan, model, layers, names)
        except Exception as e:  # numpy's reference or the budgets crashed: a finding too
            return [{"framework": "numpy", "signature": f"numpy ERROR: {type(e).__name__}",
                     "detail": f"{type(e).__name__}: {e}"}]

    def _train(self, plan, layers, names, verdict) -> list[dict]:
        """The training oracle's findings (reference.fuzz.train); a framework whose optimizer
        cannot be set to torch's step makes the case inexpressible (`reason`), never a pass."""
        try:
            failures, unable = lockstep_failures(plan, layers,
                                                 {f: self.runners[f] for f in names})
        except Exception as e:  # numpy's side crashed: a finding
            return [{"framework": "numpy", "signature": f"numpy ERROR train: {type(e).__name__}",
                     "detail": f"{type(e).__name__}: {e}"}]
        if unable:
            verdict["reason"] = "training: " + "; ".join(unable.values())
        for f in failures:
            if "Worker" in f.get("detail", "").split(":", 1)[0]:
                self._restart(f["framework"])  # its worker died or hung
        return failures

    def _check(self, plan, model, layers, names) -> list[dict]:
        report = run_check(
            names, dtype=plan["dtype"], input_kind=plan["input"], batch=plan["batch"],
            seed=plan["seed"], model=model, input_shape=tuple(plan["input_shape"]),
            runners={f: self.runners[f] for f in names}, log=lambda msg: None,
            training=plan["mode"] == "train",
            loss={"label_smoothing": plan["label_smoothing"], "reduction": plan["reduction"]})
        out = []
        for f, r in report["frameworks"].items():
            if r["status"] == "ok":
                continue
            if r["status"] == "ERROR" and r["reason"].startswith(("WorkerError",
                                                                  "WorkerTimeout")):
                self._restart(f)  # its worker died or hung; an error it raised keeps it
            out.append({"framework": f, "signature": signature(f, r, layers),
                        "detail": _detail(r)})
        return out


def _same(a, b) -> bool:
    """Config values equal up to spelling: 3 and [3, 3] (a pair), 1 and [1, 1, 1, 1]
    (zeropad2d's four sides), tuples and lists."""
    a = list(a) if isinstance(a, (list, tuple)) else a
    b = list(b) if isinstance(b, (list, tuple)) else b
    if isinstance(a, int) and not isinstance(a, bool) and isinstance(b, list):
        a = [a] * len(b)
    if isinstance(b, int) and not isinstance(b, bool) and isinstance(a, list):
        b = [b] * len(a)
    return a == b


# What an argument the generator leaves out means, as torch.nn and Keras document it (not as
# skylark defines it): a default that skylark got wrong would otherwise reach the references
# through skylark's own description of the model, and both sides would agree.
POOL_DEFAULTS = {"padding": 0, "dilation": 1, "ceil_mode": False}
DEFAULTS = {
    "maxpool2d": lambda e: {**POOL_DEFAULTS, "stride": e["kernel_size"]},
    # torch's count_include_pad (default True) belongs to int padding; "same" is TF's rule
    "avgpool2d": lambda e: {"padding": 0, "stride": e["kernel_size"],
                            "count_include_pad": None if isinstance(e.get("padding"), str)
                            else True},
}


def _as_given(entry: dict) -> dict:
    """The generator's node with the arguments it left out spelled as DEFAULTS says."""
    return {**DEFAULTS.get(entry["kind"], lambda e: {})(entry), **entry}


def _unfaithful(layers: list[dict], model) -> str:
    """The first argument, given or left to its documented default (DEFAULTS), the built model
    does not report back ("" if none)."""
    for given, got in zip(map(_as_given, layers), to_config(model), strict=True):
        for k, v in given.items():
            if k not in ("name", "inputs") and (k not in got or not _same(v, got[k])):
                return (f"node {given['name']}: {k}={v!r} came back from to_config as "
                        f"{got.get(k, 'nothing')!r}")
    return ""


def _round_trip(plan: dict, layers: list[dict], model) -> list[dict]:
    """[] when the model reports the config it was built from (to_config) and the model
    rebuilt from that, given model's state, gives model's eval logits."""
    x = np.random.default_rng(plan["seed"]).uniform(-0.5, 0.5, (2, *plan["input_shape"]))
    x = x.astype(plan["dtype"])
    detail = _unfaithful(layers, model)
    try:
        again = from_config(to_config(model), dtype=plan["dtype"], seed=plan["seed"])
        again.load_state(model.state())
        want, got = model.eval().forward(x), again.eval().forward(x)
        if not detail and got.shape != want.shape:
            detail = f"logits {got.shape} differ from the original's {want.shape}"
        elif not detail and not np.array_equal(want, got):
            detail = f"logits differ by {np.abs(got - want).max():.2e}"
    except (ValueError, TypeError, KeyError) as e:
        detail = detail or f"{type(e).__name__}: {e}"
    finally:
        model.train()
    if not detail:
        return []
    return [{"framework": "numpy-config",
             "signature": "numpy-config FAIL: to_config/from_config round trip",
             "detail": detail}]


def _reused(plan: dict, layers: list[dict], model) -> list[dict]:
    """[] when `model`, having already run (the round trip's batch of 2), then run forward and
    backward at the case's batch size and once more at another, under the other block budget
    (reference.fuzz.knobs), gives exactly what a fresh copy with its state gives on that last
    batch. A layer that remembers a plan (output size, pads, blocks, memory order) keyed on
    too little would reuse a stale one here; every check above builds fresh layers."""
    rng = np.random.default_rng((plan["seed"], 3))
    batches = (plan["batch"], 3 if plan["batch"] == 1 else 1)
    xs = [rng.uniform(-0.5, 0.5, (n, *plan["input_shape"])).astype(plan["dtype"])
          for n in batches]
    fresh = from_config(layers, dtype=plan["dtype"], seed=plan["seed"])
    fresh.load_state(model.state())
    try:
        model.eval()
        _pass(model, xs[0], rng.standard_normal((batches[0], 10)))
        cot = rng.standard_normal((batches[1], 10))
        with small_blocks({"small_blocks": not plan.get("small_blocks")}):
            got, want = _pass(model, xs[1], cot), _pass(fresh.eval(), xs[1], cot)
        detail = next((f"{k} differs from a fresh model's by "
                       f"{np.abs(np.asarray(got[k], float) - want[k]).max():.2e}"
                       for k in want if not np.array_equal(got[k], want[k])), "")
    except (ValueError, TypeError, IndexError) as e:
        detail = f"{type(e).__name__}: {e}"
    finally:
        model.train()
    if not detail:
        return []
    return [{"framework": "numpy-reuse",
             "signature": "numpy-reuse FAIL: a model run again at another batch size",
             "detail": f"batch {batches[0]} then {batches[1]}: {detail}"}]


def _pass(model, x, cot) -> dict:
    """The logits, the input gradient and every parameter gradient of one forward/backward."""
    y = model.forward(x)
    model.zero_grad()
    dx = model.backward(cot.astype(y.dtype))
    return {"logits": y.copy(), "input gradient": dx.copy(),
            **{k: g.copy() for k, g in model.grads().items()}}


def _detail(r: dict) -> str:
    if r["status"] != "FAIL":
        return r.get("reason", r["status"])
    bad = [row for row in r["rows"] if row["ok"] is False]
    row = bad[0]
    return (f"{row['tensor']}: max|a-b| {row['max_abs']} > budget {row['budget']:.3g} "
            f"{row['note']}".strip() + f" ({len(bad)} tensors off)")


def _files(plan: dict, layers: list[dict]) -> list[dict]:
    """The oracles that write files: IDX data (every case with plan["idx"]) and checkpoints
    (the cases the training oracle samples), each in a folder of its own."""
    out = []
    with tempfile.TemporaryDirectory(prefix="skylark-fuzz-") as tmp:
        if plan.get("idx"):
            out += idx_failures(plan, tmp)
        if plan.get("train"):
            out += checkpoint_failures(plan, layers, tmp)
    return out


def _numpy_case(plan: dict, model, index: int) -> list[dict]:
    """The planted-error oracle (plant.py: the checker fails what it must) and the elementwise
    one (ulp.py: each activation against math), on numpy's own tensors of the case as
    `skylark check` builds it (reference.harness.Case)."""
    case = Case.from_model(
        model, plan["input"], plan["batch"], plan["seed"], plan["dtype"],
        tuple(plan["input_shape"]), plan["input"] in ("ties", "kinks"),
        training=plan["mode"] == "train",
        loss={"label_smoothing": plan["label_smoothing"], "reduction": plan["reduction"]})
    return plant_failures(case, np.random.default_rng((plan["seed"], index, 11))) + \
        ulp_failures(case)


def _fd_sampled(plan: dict, index: int) -> bool:
    # not with activation tails (generate.tails): the affine map before the activation scales
    # the loss's curvature by up to its scale cubed and, where it saturates, the gradients
    # toward 0, so the centred difference misses the 1e-7 bar on a correct model (measured
    # 7e-6 at both steps, seed 0 case 12); the elementwise oracle (ulp.py) checks those instead
    return (plan["dtype"] == "float64" and plan["input"] == "random" and not known.has_tails(plan)
            and index % FD_EVERY == 0)


def _fd(plan, layers, index) -> list[dict]:
    model = from_config(layers, dtype="float64", seed=plan["seed"])
    rng = np.random.default_rng((plan["seed"], index, 7))
    return [{"framework": "numpy-fd",
             "signature": f"numpy-fd FAIL loss: {describe_tensor(t, layers)}",
             "detail": f"{t}: finite differences {err:.2e} relative off (bar 1e-7)"}
            for t, err in fd_failures(model, plan, rng)]
