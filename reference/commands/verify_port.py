"""`skylark verify-port SRC DST`: does a port compute what its source computes, layer by layer?

SRC and DST are each an ONNX file, a .keras file or `module:function` returning a torch
nn.Module, a keras.Model or a skylark Graph. Both are imported into skylark graphs (each import
proven against its own runtime), matched layer by layer, run on the same random and tie-heavy
batches, and compared tensor by tensor forward and backward (reference.verify_port). Exit
status: 0 every matched layer agrees; 1 a divergence (the first diverging layer named on both
sides); 2 bad usage, or a model that cannot be read or imported (one line).
"""

from __future__ import annotations

import argparse
import json
import sys

from skylark.cli import HelpFormatter, positive_int, seed_int

HELP = "check a converted model against its source, layer by layer, forward and backward"
DESCRIPTION = (
    "Import SRC and DST (each a .onnx or .keras file, or module:function returning a torch "
    "nn.Module, a keras.Model or a skylark Graph), prove each import against its own runtime, "
    "match their layers (by name, else by position; the mapping is printed), run both on the "
    "same random and tie-heavy batches, and compare every matched layer's output, output "
    "gradient and parameter gradients (a random cotangent at the logits). The first diverging "
    "layer is named on both sides.")
EPILOG = ("examples: `skylark verify-port pkg.nets:make_net net.onnx --input-shape 3,64,64`, "
          "`skylark verify-port model.keras model.onnx`. Exit status: 0 the port agrees; 1 a "
          "divergence (the first diverging layer named); 2 bad usage or a model that cannot be "
          "imported.")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"is C,H,W (three positive integers). "
                                         f"Received: {text!r}")
    return shape


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = parser.description or DESCRIPTION
    parser.epilog = parser.epilog or EPILOG
    parser.add_argument("src", metavar="SRC", help="the source model")
    parser.add_argument("dst", metavar="DST", help="its port (a converter's output)")
    parser.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                        help="the input size (default: the one a model records)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default=None,
                        help="the precision of the comparison (float64: bar 1e-10 relative; "
                             "float32: the check's derived budgets); default float64 where both "
                             "sides store float64 weights, else float32")
    parser.add_argument("--batch", type=positive_int, default=4, help="batch size")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the batches")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="leave the mapping out")
    return parser


def run(args: argparse.Namespace) -> int:
    from skylark.files import check_output_file

    from ..verify_port import format_report, verify_port

    try:
        if args.json:  # before the comparison, not after it
            check_output_file(args.json, "--json")
        report = verify_port(args.src, args.dst, input_shape=args.input_shape, dtype=args.dtype,
                             batch=args.batch, seed=args.seed,
                             log=lambda m: print(f"skylark verify-port: {m}", file=sys.stderr))
    except (ValueError, OSError) as e:
        why = (str(e).strip().splitlines() or [repr(e)])[0]
        print(f"skylark verify-port: error: {why}", file=sys.stderr)
        return 2
    print(format_report(report, quiet=args.quiet))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 0 if report["ok"] else 1


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="skylark verify-port",
                                                   formatter_class=HelpFormatter))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
