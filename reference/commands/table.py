"""The README's equivalence tables: `skylark check` over float64/float32 x random/ties/digits,
and (`--zoo`) every graph model of the zoo on 28x28 gray and 32x32 RGB.

    python -m reference.commands.table        # ~1-2 minutes on 2 cores; exit 1 if a check fails
    python -m reference.commands.table --zoo  # ~10 minutes: the zoo, every framework

Each cell: the worst relative error (max|a - b| / max|b|) over every tensor of that framework,
and in brackets the largest fraction of its budget any tensor used ("fwd": a forward-only
runtime, its forward tensors only). Runners (and the Keras
worker subprocesses) are started once and reused for all six checks.
"""

from __future__ import annotations

import sys
import time

from ..frameworks import COMPARED
from ..harness import run_check
from ..runners.registry import get_runner
from ..runners.runner import FrameworkUnavailable

DTYPES = ("float64", "float32")
INPUTS = ("random", "ties", "digits")


def cell(result: dict) -> str:
    if result["status"] in ("MISSING", "ERROR"):
        return result["status"]
    rows = [r for r in result["rows"] if r["ok"] is not None]  # None: not computed
    rel = max(r["rel"] for r in rows)
    used = max((r["max_abs"] / r["budget"] for r in rows if r["budget"]), default=0.0)
    flag = "" if result["status"] == "ok" else " FAIL"
    flag += " fwd" if result.get("forward_only") else ""  # forward tensors only
    share = f"{used:.0%}" if used >= 0.01 else f"{used:.0e}"
    return f"{rel:.1e} ({share}){flag}"


ZOO_SHAPES = ((1, 28, 28), (3, 32, 32))


def _check_cells(names, runners, model_in, shape, batch: int) -> tuple[list[str], bool]:
    """float64 on ties (verdict, worst max|a - b| and where) and float32 on random (verdict,
    how many budgets are uninformative) of `model_in(dtype)`, every framework in `names`."""
    cells, ok = [], True
    for dtype, kind in (("float64", "ties"), ("float32", "random")):
        rep = run_check(names, dtype=dtype, input_kind=kind, runners=runners,
                        model=model_in(dtype), input_shape=shape, batch=batch,
                        log=lambda msg: None)
        ok &= rep["ok"]
        rows = [(r["max_abs"], f, r["tensor"]) for f, res in rep["frameworks"].items()
                for r in res.get("rows", []) if r["ok"] is not None and r["max_abs"] is not None]
        loose = max(len(res.get("uninformative", [])) for res in rep["frameworks"].values())
        total = max(len(res.get("rows", [])) for res in rep["frameworks"].values())
        bad = [f for f, res in rep["frameworks"].items() if res["status"] != "ok"]
        worst = max(rows)
        verdict = "pass" if rep["ok"] else f"FAIL ({', '.join(bad)})"
        cells.append(f"{verdict}, {worst[0]:.1e} ({worst[1]})" if dtype == "float64"
                     else f"{verdict}; {loose} of {total} budgets above 1% of the tensor")
    return cells, ok


def zoo_row(model: str, shape, names, runners) -> tuple[str, bool]:
    """One markdown row: float64 on ties (worst max|a - b| over every tensor and framework,
    and which) and float32 on random (verdict, largest share of a budget used), and the time."""
    from skylark.models import build_model
    from skylark.zoo import ZOO

    assert model in ZOO, model
    t0 = time.perf_counter()
    cells, ok = _check_cells(names, runners, lambda dtype: build_model(model, shape, dtype=dtype),
                             shape, batch=4)
    n = sum(v.size for v in build_model(model, shape).params().values())
    shape_s = "x".join(map(str, shape))
    return (f"| {model} | {shape_s} | {n:,} | {cells[0]} | {cells[1]} | "
            f"{time.perf_counter() - t0:.0f} s |", ok)


def zoo_table() -> int:
    from skylark.zoo import ZOO

    names = list(COMPARED)
    runners, ok = _start(names), True
    print("| model | input | parameters | float64 ties: verdict, worst max\\|a-b\\| (where) "
          "| float32 random: verdict; uninformative budgets | time |")
    print("|---|---|---:|---|---|---:|")
    try:
        for model in ZOO:
            for shape in ZOO_SHAPES:
                line, good = zoo_row(model, shape, names, runners)
                ok &= good
                print(line, flush=True)
    finally:
        for r in runners.values():
            r.close()
    return 0 if ok else 1


# torchvision's classifiers as the README's table lists them: (name, constructor arguments)
TORCHVISION = (("squeezenet1_1", {}), ("shufflenet_v2_x0_5", {}), ("mnasnet0_5", {}),
               ("mobilenet_v3_small", {}), ("resnet18", {}), ("mobilenet_v2", {}),
               ("regnet_y_400mf", {}), ("efficientnet_b0", {}),
               ("googlenet", {"aux_logits": False, "init_weights": True}),
               ("densenet121", {}), ("alexnet", {}), ("vgg11_bn", {}))
TV_SHAPE = (3, 64, 64)


def _torchvision(name: str, kwargs: dict):
    from ..importers.torchvision_compat import load

    load()
    import torch
    import torchvision.models as tvm

    torch.manual_seed(0)
    return getattr(tvm, name)(weights=None, num_classes=10, **kwargs).eval()


def _import_cell(fn) -> tuple[str, object]:
    """("yes (t s)" or the unsupported items, the Imported or None)."""
    from ..importers import ImportFileError, UnsupportedError

    t0 = time.perf_counter()
    try:
        imp = fn()
    except UnsupportedError as e:
        return "no: " + "; ".join(f"`{i}`" for i in e.items[:2]), None
    except (ImportFileError, ValueError) as e:
        return f"no: {str(e)[:80]}", None
    return f"yes ({time.perf_counter() - t0:.1f} s)", imp


def torchvision_row(name: str, kwargs: dict, names, runners, tmp) -> tuple[str, bool]:
    """One row: imported from the module and from its torch.onnx.export; check float64 (ties,
    training mode) and float32 (random) in every framework, on the module's import."""
    from ..importers.onnx_source import import_onnx
    from ..importers.torch_source import import_torch

    t0 = time.perf_counter()
    module = _torchvision(name, kwargs)
    from_module, imp = _import_cell(lambda: import_torch(module, input_shape=TV_SHAPE))

    def via_onnx():
        import torch

        path = f"{tmp}/{name}.onnx"
        with _quiet():
            torch.onnx.export(module, (torch.zeros((2, *TV_SHAPE)),), path, dynamo=True,
                              input_names=["x"], output_names=["logits"])
        return import_onnx(path)

    from_onnx, _ = _import_cell(via_onnx)
    cells, ok = (_check_cells(names, runners, imp.graph, TV_SHAPE, batch=2) if imp
                 else (["-", "-"], False))
    return (f"| {name} | {from_module} | {from_onnx} | {cells[0]} | {cells[1]} | "
            f"{time.perf_counter() - t0:.0f} s |", ok)


def _quiet():
    import contextlib
    import io
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def torchvision_table(models=None) -> int:
    import tempfile

    names = list(COMPARED)
    runners, ok = _start(names), True
    print("| model | imported from the module | from its ONNX export | float64 ties: "
          "verdict, worst max\\|a-b\\| (where) | float32 random | time |")
    print("|---|---|---|---|---|---:|")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, kwargs in TORCHVISION:
                if models and name not in models:
                    continue
                line, good = torchvision_row(name, kwargs, names, runners, tmp)
                ok &= good
                print(line, flush=True)
    finally:
        for r in runners.values():
            r.close()
    return 0 if ok else 1


def _start(names) -> dict:
    runners = {}
    for f in names:
        try:
            runners[f] = get_runner(f)
        except FrameworkUnavailable as e:
            print(f"{f} is MISSING: {e.reason}", file=sys.stderr)
    return runners


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m reference.commands.table",
        description="The README's equivalence tables: skylark check in every framework over "
                    "float64/float32 x random/ties/digits inputs (the Skylark net), or with "
                    "--zoo over every graph model on 28x28 gray and 32x32 RGB. Exit 1 if any "
                    "check fails.")
    parser.add_argument("--zoo", action="store_true", help="the graph zoo's table (~10 min)")
    parser.add_argument("--torchvision", nargs="*", metavar="MODEL", default=None,
                        help="torchvision's classifiers (all, or the ones named) imported and "
                             "checked at 3x64x64, batch 2 (an hour or more on 2 cores)")
    args = parser.parse_args(argv)
    if args.zoo:
        return zoo_table()
    if args.torchvision is not None:
        return torchvision_table(args.torchvision)
    names = list(COMPARED)
    runners, results, ok = {}, {}, True
    try:
        for f in names:
            try:
                runners[f] = get_runner(f)
            except FrameworkUnavailable as e:
                print(f"{f} is MISSING: {e.reason}", file=sys.stderr)
        for dtype in DTYPES:
            for kind in INPUTS:
                rep = run_check(names, dtype=dtype, input_kind=kind, runners=runners,
                                log=lambda msg: None)
                ok &= rep["ok"]
                for f, r in rep["frameworks"].items():
                    results[f, dtype, kind] = cell(r)
    finally:
        for r in runners.values():
            r.close()
    head = [f"{d} {k}" for d in DTYPES for k in INPUTS]
    print("| framework | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for f in names:
        print(f"| {f} | " + " | ".join(results[f, d, k] for d in DTYPES for k in INPUTS) + " |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
