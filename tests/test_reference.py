"""Every framework x float32/float64 x random/ties inputs x a grid of layer options agrees with
numpy, tensor by tensor: layer outputs, loss, and both backward passes (loss, random cotangent).

One comparison helper (`assert_equivalent`) names framework, pass and tensor on failure. Each
case's numpy tensors and budgets are computed once, and all selected frameworks run it together
(the Keras workers in their subprocesses while torch/tf/keras run here).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REFERENCE_FRAMEWORKS, framework_param

import skylark as sk
from reference.harness import Case, all_zero, collect_all, dyadic_params, make_batch
from reference.spec import describe, shapes

C, P, R, F, D = sk.Conv2D, sk.MaxPool2D, sk.ReLU, sk.Flatten, sk.Dense


def net(input_shape, *layers, classes=5):
    """Sequential(*layers, Flatten, Dense(.., classes)) sized for `input_shape`."""
    body = sk.Sequential(*layers)
    feat = int(np.prod(shapes(describe(body), input_shape)[-1])) if layers else 0
    return sk.Sequential(*layers, F(), D(feat, classes, seed=99))


# name: (model factory, input shape (C, H, W), batch)
ARCHS = {
    "skylark_cnn": (lambda: sk.skylark_cnn(), (1, 28, 28), 4),
    "k1_c3_relu_pool2": (lambda: net((3, 6, 7), C(3, 4, 1, seed=1), R(), P(2)), (3, 6, 7), 4),
    "k5_s2_same_nonsquare": (lambda: net((1, 11, 9), C(1, 4, 5, 2, "same", seed=2), P(2)),
                             (1, 11, 9), 4),
    "k3_s2_same_nobias_relu_pool3s1": (
        lambda: net((3, 9, 10), C(3, 5, 3, 2, "same", bias=False, seed=3), R(), P(3, 1)),
        (3, 9, 10), 4),
    "int_pad_relu_pool3s2p1": (lambda: net((1, 8, 8), C(1, 3, 3, 1, 1, seed=4), R(),
                                           P(3, 2, 1)), (1, 8, 8), 4),
    "k3_s2_valid_pool2s1p1_negative": (lambda: net((2, 10, 8), C(2, 3, 3, 2, seed=5),
                                                   P(2, 1, 1)), (2, 10, 8), 1),
    "pool_same_asym": (lambda: net((1, 9, 9), C(1, 2, 3, seed=6), P(2, 2, "same")), (1, 9, 9), 4),
    "pool3_s2_same_asym": (lambda: net((1, 10, 9), C(1, 2, 3, seed=7), P(3, 2, "same")),
                           (1, 10, 9), 4),
    "two_convs_batch1": (lambda: net((1, 12, 12), C(1, 4, 3, 1, "same", seed=8), R(),
                                     C(4, 4, 3, 2, seed=9), P(2)), (1, 12, 12), 1),
    "flatten_relu_dense_dense": (lambda: sk.Sequential(
        C(2, 3, (3, 2), seed=10), F(), R(), D(3 * 5 * 6, 7, seed=11), R(), D(7, 4, seed=12)),
        (2, 7, 7), 4),
    "pool_first_int_pad_k2": (lambda: net((1, 7, 6), P(2, 1), C(1, 2, 3, 1, (1, 2), seed=13)),
                              (1, 7, 6), 4),
}
DTYPES = ("float64", "float32")
INPUTS = ("random", "ties")
CASES = {f"{a}-{d}-{i}": (a, d, i) for a in ARCHS for d in DTYPES for i in INPUTS}
PARAMS = [framework_param(fw, cid, fw, id=f"{cid}-{fw}")
          for cid in CASES for fw in REFERENCE_FRAMEWORKS]


def make_case(case_id: str) -> Case:
    """numpy's tensors and budgets for one case.

    With the "ties" input each parameter tensor is rounded to 7 significant bits on its own
    power-of-two grid (harness.dyadic_params), which makes every value that reaches a max-pool
    exact in float32 whatever the summation order, so a tie is a tie in every framework.
    Without it the float32 ties cases are ill-posed, not wrong:
    measured on keras-torch (stride-2 conv), two windows with identical input patches came out
    one ulp apart (-0.11255993 vs -0.11255991) where numpy ties them exactly, and the max-pool
    gradient then rightly went to the other element (cot/d.out.0 off by 0.14). `skylark check`
    reports such a flip as a divergence at the pool's input gradient; see float32_budgets.
    """
    arch, dtype, kind = CASES[case_id]
    factory, input_shape, batch = ARCHS[arch]
    model = factory()
    spec = describe(model)
    params = model.params()
    if kind == "ties":
        params = dyadic_params(params)
    k = shapes(spec, input_shape)[-1][0]
    x, labels, cot = make_batch(kind, batch, input_shape, k, seed=len(case_id), dtype=dtype)
    return Case(spec, params, dtype, input_shape, x, labels, cot)


@pytest.mark.parametrize("cid", list(CASES))  # not "case_id": _Results reads those items
def test_case_reference_tensors_are_nonzero(cid):
    """Every tensor numpy reports for a case is nonzero somewhere (zeros match zeros and prove
    nothing; a global 1/64 grid once rounded whole weight tensors to 0)."""
    assert all_zero(make_case(cid).ref) == []


def assert_equivalent(framework: str, case: Case, got) -> None:
    """The one comparison: every tensor within budget; the message names framework, pass, tensor."""
    if isinstance(got, Exception):
        raise AssertionError(f"{framework}: raised {type(got).__name__}: {got}") from got
    report = case.compare(framework, got)
    bad = [r for r in report["rows"] if not r["ok"]]
    worst = report["worst"]
    print(f"{framework} {case.dtype}: worst {worst['tensor']} max|a-b|={worst['max_abs']:.3e} "
          f"<= budget {worst['budget']:.3e}")
    if bad:
        def where(t):
            return "forward" if "/" not in t else f"{t.split('/')[0]} backward pass"

        lines = [f"  {r['tensor']} ({where(r['tensor'])}): max|a-b|={r['max_abs']} "
                 f"budget={r['budget']:.3e} {r['note']}" for r in bad]
        fb = report["first_backward"]
        raise AssertionError(
            f"{framework} ({case.dtype}) differs from numpy; first diverging tensor: forward "
            f"{report['first_forward']}, loss pass {fb['loss']}, cotangent pass {fb['cot']}\n"
            + "\n".join(lines)
        )


class _Results:
    """Per case: numpy's Case and every selected framework's tensors, computed on first use."""

    def __init__(self, session, runner) -> None:
        self.session, self.runner, self.cases, self.got = session, runner, {}, {}

    def get(self, case_id: str, framework: str):
        if case_id not in self.cases:
            self.cases[case_id] = make_case(case_id)
            wanted = {it.callspec.params["framework"] for it in self.session.items
                      if getattr(it, "callspec", None)
                      and it.callspec.params.get("case_id") == case_id}
            runners = {}
            for fw in REFERENCE_FRAMEWORKS:  # fixed order; skips raise only for `framework`
                if fw in wanted:
                    try:
                        runners[fw] = self.runner(fw)
                    except pytest.skip.Exception:
                        if fw == framework:
                            raise
            self.got[case_id] = collect_all(runners, self.cases[case_id])
        if framework not in self.got[case_id]:
            self.runner(framework)  # skips with the reason when not installed
        return self.cases[case_id], self.got[case_id][framework]


@pytest.fixture(scope="module")
def results(request, reference_runner):
    return _Results(request.session, reference_runner)


@pytest.mark.parametrize("case_id, framework", PARAMS)
def test_equivalence(case_id, framework, results):
    assert_equivalent(framework, *results.get(case_id, framework))
