"""`skylark compare` for a forward-only runtime (Runner.supports_gradients False: onnxruntime):
it cannot train, so it runs numpy's trained weights on the test set and its predictions are
compared with numpy's own."""

from __future__ import annotations

import time

import numpy as np

from ..runners.numpy_ref import NumpyRunner


def _logits(runner, x, chunk: int = 1000) -> np.ndarray:
    return np.concatenate([runner.predict(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def predict_record(runner, rec: dict, spec, ref: dict, data, dtype: str) -> dict:
    """`rec` completed for a forward-only `runner`: numpy's final state `ref["params"]` loaded,
    test accuracy, the share of test images whose predicted class equals numpy's, and
    max|logit - numpy's logit|."""
    start = time.perf_counter()
    runner.setup(spec, ref["params"], dtype, data.input_shape)
    got = _logits(runner, data.x_test)
    rec["seconds"] = time.perf_counter() - start
    numpy = NumpyRunner()
    numpy.setup(spec, ref["params"], dtype, data.input_shape)
    want = _logits(numpy, data.x_test)
    rec.update(forward_only=True, versions=runner.versions(), params=ref["params"],
               test_accuracy=float((got.argmax(1) == data.y_test).mean()),
               prediction_agreement=float((got.argmax(1) == want.argmax(1)).mean()),
               max_logit_diff=float(np.abs(got - want).max()))
    return rec


def summary_row(r: dict) -> dict:
    """The summary.json entry of a forward-only record."""
    return {"status": "ok", "forward_only": True, "final_test_accuracy": r["test_accuracy"],
            "seconds": round(r["seconds"], 3), "prediction_agreement": r["prediction_agreement"],
            "max_logit_diff": r["max_logit_diff"], "versions": r["versions"]}


def table_tail(s: dict) -> str:
    """The end of its table row, where a training framework shows its lockstep columns."""
    return (f"forward-only: numpy's trained weights, same class on "
            f"{s['prediction_agreement']:.2%} of the test set, max|Δlogit| "
            f"{s['max_logit_diff']:.2e}")
