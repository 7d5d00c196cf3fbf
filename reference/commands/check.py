"""`skylark check`: every tensor of one batch through every framework, compared against numpy.

    python -m reference.commands.check --dtype float64 --input ties
    python -m reference.commands.check --frameworks torch,keras-jax --json check.json

Prints a table (framework x tensor: max|a - b|, relative error, budget, ok/FAIL), the first
diverging tensor per framework in forward order and then in each backward pass's order, and the
environment fingerprint. Exit status: 0 when every tensor of every framework is within budget;
1 when any is not, when a framework errors (fails to start, crashes, times out), or when a
framework is MISSING (not installed) — unless --allow-missing, which reports MISSING loudly but
does not fail on it (yet still exits 1 when nothing at all was compared); 2 on bad usage
(including an unwritable --json path).

Registered as the `skylark check` command (pyproject.toml, entry-point group
"skylark.commands"): HELP, DESCRIPTION, `add_arguments` and `run` are what skylark.cli uses.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from skylark.cli import HelpFormatter, add_model_arguments, positive_int, seed_int

from ..frameworks import COMPARED, parse_frameworks
from ..harness import run_check
from ..importers.sources import extend_model_help, resolve_model
from ..inputs import INPUTS
from ..runners.runner import PLANTS
from ..spec import describe, geometry

HELP = "compare every tensor of one batch across frameworks"
DESCRIPTION = ("Forward outputs, loss and every gradient of one batch, each framework against "
               "numpy, within a derived budget.")
EXIT_CODES = ("exit status: 0 every tensor of every framework within budget; 1 a tensor out of "
              "budget, a framework ERROR, a framework MISSING (unless --allow-missing), or "
              "nothing compared at all; 2 bad usage.")


def input_shape_arg(text: str) -> tuple[int, int, int]:
    """"3,32,32" -> (3, 32, 32): three positive ints."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three positive ints, e.g. 3,32,32). "
                                         f"Received: {text!r}")
    return shape


def _plant(text: str) -> tuple[str, str]:
    fw, _, bug = text.partition("=")
    if fw not in COMPARED or bug not in PLANTS or fw not in PLANTS[bug]:
        raise argparse.ArgumentTypeError(
            f"expected FRAMEWORK=BUG with BUG one of {tuple(PLANTS)} (each for its frameworks). "
            f"Received: {text!r}"
        )
    return fw, bug


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The check's options (defaults shown by an ArgumentDefaultsHelpFormatter, not repeated)."""
    if not parser.epilog:
        parser.epilog = EXIT_CODES
    parser.add_argument(
        "--frameworks", type=parse_frameworks, default="all", metavar="LIST",
        help=f"comma-separated, or 'all' (= {','.join(COMPARED)}); numpy is the "
             "reference every one is compared against",
    )
    add_model_arguments(parser)
    extend_model_help(parser)
    parser.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                        help="cross-entropy over the batch")
    parser.add_argument("--mode", choices=("train", "eval"), default="train",
                        help="train: batch statistics, running-statistics update and dropout "
                             "(the same masks in every framework); eval: running statistics, "
                             "no dropout")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="the dtype every framework computes in")
    parser.add_argument("--input", choices=INPUTS, default="random",
                        help="random: U[-0.5, 0.5]; ties: flat background (pool windows tie); "
                             "digits: the bundled 8x8 digits; kinks: exact zeros and the kinks of "
                             "ReLU6 and the hard activations (-3, 3, 6), an all-zero sample")
    parser.add_argument("--input-shape", type=input_shape_arg, default=None, metavar="C,H,W",
                        help="the per-sample input shape, e.g. 3,32,32 for CIFAR-sized RGB "
                             "(default: 1,8,8 for --input digits, else 1,28,28)")
    parser.add_argument("--batch", type=positive_int, default=4, help="batch size")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the model and the batch")
    parser.add_argument("--json", metavar="PATH", help="also write the full report here")
    parser.add_argument("--allow-missing", action="store_true",
                        help="a framework that is not installed is reported, not a failure")
    parser.add_argument("--raw-weights", action="store_true",
                        help="with ties/digits, keep the initial weights instead of rounding "
                             "each tensor to 7 significant bits (which makes tied windows tie "
                             "exactly in every framework); float rounding may then pick other "
                             "pool winners")
    parser.add_argument("--quiet", action="store_true", help="table rows only for FAILs")
    # TEST-ONLY: inject a known bug into one framework's copy (tests/test_check.py).
    parser.add_argument("--plant", type=_plant, action="append", default=[],
                        help=argparse.SUPPRESS)
    return parser


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2e}"


def _uninformative_lines(report: dict) -> list[str]:
    """Say, never hide, where a budget was too wide to tell a bug from rounding."""
    from ..harness import UNINFORMATIVE

    loose = {f: r["uninformative"] for f, r in report["frameworks"].items()
             if r.get("uninformative")}
    if not loose:
        return []
    f, tensors = max(loose.items(), key=lambda kv: len(kv[1]))
    total = len(report["frameworks"][f]["rows"])
    return [f"  note: {len(tensors)} of {total} tensors ({f}; first {tensors[0]}) had a budget "
            f"above {UNINFORMATIVE:.0%} of their own magnitude: there an O(1) bug would pass; "
            f"--dtype float64 checks every tensor at 1e-10 (docs/design.md, section 9)"]


def format_report(report: dict, quiet: bool = False) -> str:
    cfg = report["config"]
    loss = cfg.get("loss", {})
    lines = [f"skylark check: {cfg['dtype']}, {cfg.get('mode', 'train')} mode, input "
             f"{cfg['input']}, batch {cfg['batch']}, seed {cfg['seed']}, input shape "
             f"{tuple(cfg['input_shape'])}, weights {cfg['weights']}, loss {loss.get('reduction')}"
             f" (label smoothing {loss.get('label_smoothing')})", ""]
    head = f"{'framework':<17} {'tensor':<18} {'max|a-b|':>9} {'rel':>9} {'budget':>9}  status"
    lines += [head, "-" * len(head)]
    for f, r in report["frameworks"].items():
        if r["status"] in ("MISSING", "ERROR"):
            lines.append(f"{f:<17} {'(all)':<18} {'':>9} {'':>9} {'':>9}  {r['status']}")
            continue
        for row in r["rows"]:
            if quiet and row["ok"] is not False:
                continue
            status = ("ok" if row["ok"] else row["note"] if row["ok"] is None
                      else "FAIL" + (f" ({row['note']})" if row["note"] else ""))
            lines.append(f"{f:<17} {row['tensor']:<18} {_fmt(row['max_abs']):>9} "
                         f"{_fmt(row['rel']):>9} {_fmt(row['budget']):>9}  {status}")
    lines += ["", "summary (first diverging tensor: forward order, then each backward pass):"]
    for f, r in report["frameworks"].items():
        if r["status"] == "MISSING":
            lines.append(f"  {f:<17} MISSING  {r['reason']}")
        elif r["status"] == "ERROR":
            lines.append(f"  {f:<17} ERROR    {r['reason']}")
        else:
            w = r["worst"]
            worst = (f"worst {w['tensor']} {_fmt(w['max_abs'])} of budget {_fmt(w['budget'])}"
                     if w else "")
            fb = r["first_backward"]
            first = ("" if r["status"] == "ok" else
                     f"first: forward {r['first_forward']}, loss pass {fb['loss']}, "
                     f"cotangent pass {fb['cot']}; ")
            scope = ("forward tensors only; gradients not computed (forward-only runtime); "
                     if r.get("forward_only") else "")
            lines.append(f"  {f:<17} {r['status']:<8} {scope}{first}{worst}")
    lines += _uninformative_lines(report)
    fp = report.get("fingerprint", {})
    lines += ["", "environment: " + ", ".join(
        f"{k}={fp[k]}" for k in ("python", "numpy", "platform", "cpu_count", "dtype",
                                 "torch_threads", "tf_threads", "env") if k in fp
    )]
    for f, v in fp.get("frameworks", {}).items():
        lines.append(f"  {f:<17} " + ", ".join(f"{k} {x}" for k, x in v.items()
                                                if k not in ("numpy", "skylark")))
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _usage_error(message: str) -> int:
    print(f"skylark check: error: {message}", file=sys.stderr)
    return 2


def _json_path_error(path: str) -> str | None:
    """Why `path` cannot be written (checked before the slow run), or None."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--json {path!r} is a directory"
    if not os.path.isdir(folder):
        return f"--json {path!r}: the folder {folder!r} does not exist"
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--json {path!r} is not writable"
    return None


def _input_shape(args) -> tuple[int, int, int]:
    """--input-shape, else 1x8x8 for the digits and 1x28x28 otherwise."""
    shape = getattr(args, "input_shape", None) or (
        (1, 8, 8) if args.input == "digits" else (1, 28, 28))
    if args.input == "digits" and tuple(shape) != (1, 8, 8):
        raise ValueError(f"--input digits are 1,8,8 images. Received: --input-shape "
                         f"{','.join(map(str, shape))}")
    return tuple(shape)


def run(args: argparse.Namespace) -> int:
    """Run the check the parsed `args` describe; print the report; return the exit status."""
    try:
        frameworks = parse_frameworks(args.frameworks)
    except argparse.ArgumentTypeError as e:
        return _usage_error(f"argument --frameworks: {e}")
    if args.json and (why := _json_path_error(args.json)):
        return _usage_error(why)
    try:
        model, input_shape, imp = resolve_model(
            args.model, args.input_shape, default_shape=_input_shape(args), dtype=args.dtype,
            seed=args.seed)
        _input_shape(argparse.Namespace(input=args.input, input_shape=input_shape))
        for note in imp.notes if imp else ():
            print(f"skylark check: import: {note}", file=sys.stderr)
        geometry(describe(model), input_shape)  # what the references cannot mirror, named now
    except ValueError as e:
        return _usage_error(str(e).splitlines()[0] if str(e) else repr(e))
    report = run_check(
        frameworks, dtype=args.dtype, input_kind=args.input, batch=args.batch,
        seed=args.seed, plants=dict(getattr(args, "plant", []) or []),
        dyadic=False if getattr(args, "raw_weights", False) else None,
        model=model, input_shape=input_shape, training=args.mode == "train",
        loss={"label_smoothing": args.label_smoothing, "reduction": args.reduction},
    )
    print(format_report(report, quiet=args.quiet))
    missing = [f for f, r in report["frameworks"].items() if r["status"] == "MISSING"]
    failed = [f for f, r in report["frameworks"].items() if r["status"] in ("FAIL", "ERROR")]
    if missing:
        print(f"\nMISSING (not installed, NOT checked): {', '.join(missing)}"
              + ("" if args.allow_missing else "  -> exit 1 (pass --allow-missing to accept)"),
              file=sys.stderr)
    if args.json:
        try:
            with open(args.json, "w") as fh:
                json.dump(_jsonable(report), fh, indent=1, allow_nan=False)
        except OSError as e:
            return _usage_error(f"cannot write --json {args.json!r}: {e.strerror or e}")
    if len(missing) == len(report["frameworks"]):  # --allow-missing must not pass on nothing
        print(f"\nskylark check FAILED: nothing compared: every framework is MISSING "
              f"({', '.join(missing) or 'none requested'})")
        return 1
    if failed or (missing and not args.allow_missing):
        print(f"\nskylark check FAILED: {', '.join(failed + missing)}")
        return 1
    partial = [f for f, r in report["frameworks"].items() if r.get("forward_only")]
    print("\nskylark check passed: every tensor within budget"
          + (f" ({', '.join(partial)}: forward tensors only)" if partial else ""))
    return 0


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="skylark check", formatter_class=HelpFormatter, description=DESCRIPTION,
    ))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 2 on bad usage, 0 for --help
        return int(e.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
