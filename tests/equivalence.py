"""The one comparison helper of the equivalence tests.

    assert_layer_matches(sk.Conv2D(3, 4, 3, stride=(2, 1)), (3, 9, 8), "torch")

builds the smallest net that ends in logits around the layer (the layer, then a Flatten if it
outputs a map, then a Dense), and for float64 and float32, random and tie-heavy inputs, compares
every tensor (each layer output, the loss, in training the updated running statistics
`stat.{i}.{buffer}`, both backward passes: from the loss and from a random cotangent) of each
framework against numpy within reference.budgets' bars. `training=False` runs BatchNorm2d on its
running statistics and Dropout as the identity; in training every dropout layer gets the
harness's keep-masks (reference.inputs.dropout_masks). `loss=` passes softmax_cross_entropy's
options (label_smoothing, reduction). The failure message names the framework, the dtype, the
input, the mode, the pass and the first diverging tensor. A framework that is not installed
skips the test, saying why.
"""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk
from reference.harness import Case, trace_all
from reference.inputs import all_zero, dyadic_params, make_batch
from reference.runners.registry import get_runner
from reference.runners.runner import FrameworkUnavailable
from reference.spec import describe, shapes

DTYPES = ("float64", "float32")
INPUTS = ("random", "ties")
RUNNERS: dict = {}  # framework -> Runner started once per test session (closed by conftest)


def runner(framework: str):
    """The session's runner for `framework`; skips the test when it is not installed."""
    if framework not in RUNNERS:
        try:
            RUNNERS[framework] = get_runner(framework)
        except FrameworkUnavailable as e:
            pytest.skip(f"{framework} is not installed: {e.reason}")
    return RUNNERS[framework]


def minimal_net(layer, input_shape, classes: int = 5) -> sk.Sequential:
    """`layer` (or a Sequential) followed by what it takes to end in (N, classes) logits."""
    body = list(layer) if isinstance(layer, sk.Sequential) else [layer]
    out = shapes(describe(sk.Sequential(*body)), input_shape)[-1]
    if len(out) == 1 and isinstance(body[-1], sk.Dense):
        return sk.Sequential(*body)
    tail = [sk.Flatten()] if len(out) == 3 else []
    return sk.Sequential(*body, *tail, sk.Dense(int(np.prod(out)), classes, seed=99))


def make_case(model, input_shape, dtype: str, kind: str, batch: int = 4, seed: int = 0, *,
              training: bool = True, loss: dict | None = None) -> Case:
    """numpy's tensors and budgets for one model (its state: parameters and buffers), dtype,
    input and mode (`training`, `loss`: as Case's).

    With the "ties" input each parameter tensor is rounded to 7 significant bits on its own
    power-of-two grid (reference.inputs.dyadic_params), which makes every value that reaches a
    max-pool exact in float32 whatever the summation order, so a tie is a tie in every
    framework. Without it the float32 ties cases are ill-posed, not wrong: measured on
    keras-torch (stride-2 conv), two windows with identical input patches came out one ulp
    apart where numpy ties them exactly, and the max-pool gradient then rightly went to the
    other element. `skylark check` reports such a flip as a divergence at the pool's input
    gradient.
    """
    spec, state = describe(model), model.state()
    if kind != "random":
        state = dyadic_params(state)
    k = shapes(spec, input_shape)[-1][0]
    x, labels, cot = make_batch(kind, batch, input_shape, k, seed=seed, dtype=dtype)
    return Case(spec, state, dtype, input_shape, x, labels, cot, training=training, loss=loss)


def assert_equivalent(framework: str, case: Case, got, label: str = "") -> None:
    """Every tensor within budget; the message names framework, case, pass and tensor."""
    mode = "train" if case.training else "eval"
    where = f"{framework} ({case.dtype}, {mode}{', ' + label if label else ''})"
    if isinstance(got, Exception):
        raise AssertionError(f"{where}: raised {type(got).__name__}: {got}") from got
    # a forward-only runtime (onnxruntime): its gradients are reported as not computed
    report = case.compare(framework, got, getattr(RUNNERS.get(framework), "supports_gradients",
                                                  True))
    # every numpy tensor was compared (the running statistics too), and nothing else
    compared = [r["tensor"] for r in report["rows"]]
    assert sorted(compared) == sorted(case.ref), (where, compared, sorted(case.ref))
    bad = [r for r in report["rows"] if r["ok"] is False]
    if bad:
        def part(t):
            return "forward" if "/" not in t else f"{t.split('/')[0]} backward pass"

        lines = [f"  {r['tensor']} ({part(r['tensor'])}): max|a-b|={r['max_abs']} "
                 f"budget={r['budget']:.3e} {r['note']}" for r in bad]
        fb = report["first_backward"]
        raise AssertionError(
            f"{where} differs from numpy; first diverging tensor: forward "
            f"{report['first_forward']}, loss pass {fb['loss']}, cotangent pass {fb['cot']}\n"
            + "\n".join(lines)
        )


def equivalence_tests(cases, modes: bool = False):
    """The two tests every layer family runs on its `cases` (pytest params of (factory, input
    shape (C, H, W), batch)), for float64/float32 x random/ties (and, with `modes`, training and
    evaluation mode): numpy's tensors are nonzero (zeros match zeros and prove nothing), and
    every framework matches them. A family file binds them to its own names:

        test_conv_case_reference_tensors_are_nonzero, test_conv_matches_every_framework = \
            equivalence_tests(CONV_CASES)
    """
    from conftest import FRAMEWORK_PARAMS

    variants = [(d, k) for d in DTYPES for k in INPUTS]

    trainings = [pytest.param(True, id="train")]  # the mode every layer is checked in
    if modes:  # layers whose forward differs by mode (BatchNorm2d, Dropout) are checked in both
        trainings.append(pytest.param(False, id="eval"))

    @pytest.mark.parametrize("training", trainings)
    @pytest.mark.parametrize("dtype, kind", variants)
    @pytest.mark.parametrize("make, shape, batch", cases)
    def nonzero(make, shape, batch, dtype, kind, training):
        case = make_case(minimal_net(make(), shape), shape, dtype, kind, batch, training=training)
        assert all_zero(case.ref) == []

    @pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
    @pytest.mark.parametrize("training", trainings)
    @pytest.mark.parametrize("dtype, kind", variants)
    @pytest.mark.parametrize("make, shape, batch", cases)
    def matches(make, shape, batch, dtype, kind, training, framework):
        assert_layer_matches(make(), shape, framework, dtypes=(dtype,), inputs=(kind,),
                             batch=batch, training=training)

    return nonzero, matches


def assert_layer_matches(layer, input_shape, frameworks, *, dtypes=DTYPES, inputs=INPUTS,
                         batch: int = 4, seed: int = 0, training: bool = True,
                         loss: dict | None = None) -> None:
    """Compare `layer` (a skylark layer, or a whole Sequential, with its state: parameters and
    buffers) in `frameworks` (a name or a list) against numpy: every tensor, float64 and
    float32, random and tie-heavy inputs; in `training` or eval mode, with `loss` options."""
    names = [frameworks] if isinstance(frameworks, str) else list(frameworks)
    model = minimal_net(layer, tuple(input_shape))
    runners = {f: runner(f) for f in names}
    for dtype in dtypes:
        for kind in inputs:
            case = make_case(model, tuple(input_shape), dtype, kind, batch, seed,
                             training=training, loss=loss)
            # zeros match zeros and prove nothing (a too-coarse weight rounding once did that)
            assert all_zero(case.ref) == [], f"numpy's all-zero tensors ({dtype}, {kind})"
            got = trace_all(runners, case)
            for f in names:
                assert_equivalent(f, case, got[f], kind)
