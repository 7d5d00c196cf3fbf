"""The planted-error oracle: does the checker still fail a tensor that is off by more than its bar?

    failures = plant_failures(case, rng)   # [] when the checker is as strict as it says

With correct frameworks, a checker that turned lenient (a looser bar, a signed error, a tensor
compared with numpy's own, a dtype let through) shows on no input. So the tensors of a case are
planted with known errors and put through the comparison `skylark check` uses
(reference.harness.Case.compare, i.e. compare_tensors, with the case's own budgets): numpy's
own tensors stand in for a framework's (error 0 everywhere), and one random element of a tensor
is moved from numpy's value by a chosen amount with a random sign. What must happen:

- every tensor, each moved by 4x its budget: every row fails (a comparison that lets a planted
  error through, at any tensor);
- a float32 tensor sent back as float64, or a float64 one as float32: that row fails;
- the bars a rule stated apart from the code gives (`rule_bars`): a plant of 1.5x the rule's
  largest allowed bar fails, a plant of half its smallest passes.

The rule (docs/design.md section 1, restated here, not read from reference.budgets):
- float64: the bar is 1e-10 * max(1, max|b|), raised by a derived rounding floor that is never
  above eps32 * max(1, max|b|). Where no arithmetic produced the tensor the floor is 0: the
  cotangent pass's gradient at the logits IS the supplied cotangent, so its bar is exactly
  1e-10 * max(1, max|cot|).
- float32: 2 * eps32 * n * M, n the sum of the reduction lengths that produced the tensor, M
  its magnitude (the tensor computed on absolute values). Stated independently only where
  n and M follow from the layer's documented shape alone: the cotangent pass's logits gradient
  (n = 0, bar 0); a Dense layer straight on the flattened input (torch's Linear: n =
  in_features, +1 for the bias add; M = |x| |W|^T + |b|) or on the globally average-pooled
  input (the pool: n = H * W, M = the mean of |x|; the Dense adds its own to both); and the
  loss of a model that is that alone (n = in_features + bias + K for logsumexp, + N with the
  sum reduction; magnitude 2 * (max M(logits) + log K), times N with the sum). Deeper float32
  budgets are derived through each kind's own reduction rule; restating those would copy the
  code under test (docs/fuzz.md, "Out of reach"). What the rule still says of any model is how
  the loss's bar follows from the logits' (`_loss_from_logits`): given the logits' bar B = 2
  eps32 n M, the loss's is 4 eps32 c (n + K + N_sum)(M + log K) with n at least the last
  Dense's in_features + bias and M at least max|logits|; over the n, M with n M = B / (2 eps32)
  in those ranges that is largest at an end. B is the code's, so this pins the loss's own
  terms, not the logits' derivation (the Dense rule above does that where it can).
"""

from __future__ import annotations

import math

import numpy as np

from ..harness import Case
from ..spec import node_names

EPS32 = 2.0**-23  # float32's spacing at 1, stated here rather than imported from budgets
F64_REL = 1e-10  # docs/design.md: float64 agrees to 1e-10 relative to max(1, max|b|)
BIG, OVER, UNDER = 4.0, 1.5, 0.5  # plant sizes: x the budget, x the rule's top, x its bottom


def plant_failures(case: Case, rng) -> list[dict]:
    """One failure per plant class the checker got wrong ([] when it is as strict as stated)."""
    out = []
    budget = {t: case.budget[t] for t in case.ref}
    big = _big_plants(case, budget, rng)
    out += _must(case, big, False, "a planted error of 4x the budget passed")
    out += _must(case, _dtype_plant(case, rng), False,
                 f"a tensor of the wrong dtype passed in a {case.dtype} run")
    bars = rule_bars(case)
    over = {t: (OVER * hi, hi) for t, (lo, hi) in bars.items() if math.isfinite(hi)}
    under = {t: (UNDER * lo, lo) for t, (lo, hi) in bars.items() if lo > 0}
    out += _must(case, _plants(case, over, rng, above=True), False,
                 f"a {case.dtype} bar looser than the rule")
    out += _must(case, _plants(case, under, rng, above=False), True,
                 f"a {case.dtype} bar stricter than the rule")
    return out


def _must(case: Case, plants: dict, ok: bool, what: str) -> list[dict]:
    """[] when every planted tensor's row comes out `ok`; plants: tensor -> (array, note)."""
    if not plants:
        return []
    got = {**case.ref, **{t: a for t, (a, _) in plants.items()}}
    rows = {r["tensor"]: r for r in case.compare("numpy-plant", got)["rows"]}
    wrong = [t for t in plants if rows[t]["ok"] is not ok]
    if not wrong:
        return []
    t = wrong[0]
    return [{"framework": "numpy-plant", "signature": f"numpy-plant FAIL: {what}",
             "detail": f"{t}: {plants[t][1]}, budget {rows[t]['budget']:.3g}, "
                       f"{'failed' if ok else 'passed'} ({len(wrong)} of {len(plants)})"}]


def _moved(ref: np.ndarray, delta: float, rng) -> tuple[np.ndarray, float]:
    """A copy of `ref` with one random element moved by +-delta (at least 4 ulps of it, so the
    move survives rounding to the dtype); the error actually planted."""
    a = np.array(ref, copy=True)
    i = tuple(int(rng.integers(n)) for n in a.shape)
    v = float(a[i])
    step = max(delta, 4 * float(np.spacing(a.dtype.type(abs(v)))))
    a[i] = v + (step if rng.random() < 0.5 else -step)
    return a, abs(float(a[i]) - v)


def _big_plants(case: Case, budget: dict, rng) -> dict:
    out = {}
    for t, ref in case.ref.items():
        if np.size(ref) and math.isfinite(budget[t]):
            a, err = _moved(ref, BIG * budget[t], rng)
            out[t] = (a, f"one element moved by {err:.3g}")
    return out


def _dtype_plant(case: Case, rng) -> dict:
    """One random tensor sent back in the other float dtype (from float32 the values are
    unchanged: only the dtype can fail it)."""
    names = [t for t in case.ref if np.size(case.ref[t])]
    t = names[int(rng.integers(len(names)))]
    other = np.float64 if case.dtype == "float32" else np.float32
    return {t: (np.asarray(case.ref[t]).astype(other), f"sent back as {np.dtype(other).name}")}


def _plants(case: Case, sizes: dict, rng, above: bool) -> dict:
    """Each tensor moved by its size; kept where the planted error is still on its side of
    the rule's bar after rounding (above it, or at most it)."""
    out = {}
    for t, (delta, bar) in sizes.items():
        if not np.size(case.ref[t]):
            continue
        a, err = _moved(case.ref[t], delta, rng) if delta > 0 else (case.ref[t], 0.0)
        if (err > bar) if above else (err <= bar):
            out[t] = (a, f"one element moved by {err:.3g} (the rule's bar {bar:.3g})")
    return out


def rule_bars(case: Case) -> dict[str, tuple[float, float]]:
    """tensor -> (smallest, largest) bar the rule allows, for the tensors it pins down."""
    last = node_names(case.spec)[-1]
    if case.dtype == "float64":
        out = {}
        for t, b in case.ref.items():
            scale = max(1.0, float(np.abs(b).max(initial=0.0)))
            out[t] = (F64_REL * scale, max(F64_REL, EPS32) * scale)
        lo = out[f"cot/d.out.{last}"][0]
        out[f"cot/d.out.{last}"] = (lo, lo)  # the cotangent itself: no rounding, no floor
        return out
    return {f"cot/d.out.{last}": (0.0, 0.0), **_loss_from_logits(case),
            **_dense_on_input(case, case.spec)}


def _loss_from_logits(case: Case) -> dict[str, tuple[float, float]]:
    """float32: the largest loss bar the rule allows given the logits' (module docstring)."""
    fc = case.spec[-1]
    logits = case.ref[f"out.{fc['name']}"]
    k, batch = logits.shape[1], len(case.x)
    n_sum = batch if case.loss.get("reduction") == "sum" else 0
    prod = case.budget[f"out.{fc['name']}"] / (2 * EPS32)  # n * M
    n_min = fc["in_features"] + int(bool(fc.get("bias", True)))
    m_min = float(np.abs(logits).max(initial=0.0))
    if fc["kind"] != "dense" or not (m_min > 0 and math.isfinite(prod)) or prod < n_min * m_min:
        return {}
    log_k, c = math.log(k), n_sum or 1

    def bar(m):  # n = prod / m
        return 4 * EPS32 * c * (prod + prod / m * log_k + (k + n_sum) * (m + log_k))
    return {"loss": (0.0, max(bar(m_min), bar(prod / n_min)))}


def _dense_on_input(case: Case, layers: list[dict]) -> dict[str, tuple[float, float]]:
    """float32: the bars of a Dense on the flattened or globally average-pooled input, and of
    the loss of a model that is that alone, from torch's Linear and AdaptiveAvgPool2d(1) shapes
    (module docstring; the pool's mean is a sum of H * W terms)."""
    kinds = [e["kind"] for e in layers[:2]]
    if len(layers) < 2 or kinds[1] != "dense" or kinds[0] not in ("flatten", "globalavgpool2d"):
        return {}
    x, out = np.abs(np.asarray(case.x, np.float64)), {}
    n_in = 0
    if kinds[0] == "globalavgpool2d":
        n_in, x = x.shape[2] * x.shape[3], x.mean(axis=(2, 3))
        out[f"out.{layers[0]['name']}"] = (2 * EPS32 * n_in * float(x.max()),) * 2
    fc = layers[1]
    w, b = (np.abs(np.asarray(case.state[f"{fc['name']}.{p}"], np.float64))
            if f"{fc['name']}.{p}" in case.state else 0.0 for p in ("weight", "bias"))
    m = x.reshape(len(x), -1) @ w.T + b
    n = n_in + fc["in_features"] + int(bool(fc.get("bias", True)))
    out[f"out.{fc['name']}"] = (2 * EPS32 * n * float(m.max(initial=0.0)),) * 2
    if len(layers) == 2:
        k, total = m.shape[1], case.loss.get("reduction") == "sum"
        n_sum = len(case.x) if total else 0
        loss = 2 * EPS32 * (n + k + n_sum) * 2 * (float(m.max()) + math.log(k)) * (n_sum or 1)
        out["loss"] = (loss, loss)
    return out
