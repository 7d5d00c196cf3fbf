"""`skylark export CKPT --to torch|keras|tf|onnx --out PATH`: a checkpoint as another framework's
weights file (or, `--to torch --out model.pt2`, a whole torch.export program), loaded back in
that framework and checked against numpy before it is kept.

Registered as a `skylark` command (pyproject.toml, entry-point group "skylark.commands"). Exit
status: 0 written (and verified); 1 the verification failed (nothing written); 2 bad usage or
data (a wrong --to, a missing or unreadable checkpoint, a model that does not fit it, an --out
that exists without --force or cannot be written), always one line naming the value.
"""

from __future__ import annotations

import argparse
import sys

from skylark.cli import HelpFormatter

from ..porting import TARGETS, VerificationError, check_format, export_weights, verify_line

HELP = "write a checkpoint as torch, Keras, TensorFlow or ONNX weights (verified)"
DESCRIPTION = ("A skylark .npz checkpoint as a torch state_dict, Keras .weights.h5 or .keras "
               "model, TensorFlow "
               "SavedModel or ONNX model; the file is loaded back in its framework and its "
               "logits on a random and a ties batch checked against numpy before it is kept.")
EPILOG = ("The architecture is the checkpoint's own when it records one, else --model. "
          "exit status: 0 written and verified; 1 verification failed (nothing written); "
          "2 bad usage or data.")


def input_shape_arg(text: str) -> tuple[int, int, int]:
    """"1,28,28" -> (1, 28, 28); argparse.ArgumentTypeError naming the text."""
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three integers >= 1). "
                                         f"Received: {text!r}")
    return shape


def add_common(parser: argparse.ArgumentParser) -> None:
    """What export and import share: --model, --input-shape, --force, --no-verify."""
    parser.add_argument("--model", default=None, metavar="NAME|FILE",
                        help="the architecture when the checkpoint records none: skylark, "
                             "lenet5, vgg-bn, a .json model file or module:function "
                             "(default: skylark)")
    parser.add_argument("--input-shape", type=input_shape_arg, metavar="C,H,W",
                        help="per-sample input shape (default: the checkpoint's or its "
                             "dataset's; 1,28,28)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip loading the file back and checking it against numpy")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.epilog = parser.epilog or EPILOG
    parser.add_argument("checkpoint", metavar="CKPT", help="a skylark .npz checkpoint")
    parser.add_argument("--to", required=True, metavar="|".join(TARGETS),
                        help="the target framework")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the file to write (Keras: .weights.h5 the weights, .keras the "
                             "full model in built-in layers, loadable without skylark; "
                             "tf: a folder; "
                             "torch: a .pt2 is the whole program, torch.export, any other "
                             "name the state_dict)")
    add_common(parser)
    return parser


def usage_error(command: str, e: BaseException) -> int:
    message = str(e).splitlines()[0] if str(e) else repr(e)
    print(f"skylark {command}: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        check_format(args.to, "--to")  # named as the user typed it, not as the function's to=
        rep = export_weights(args.checkpoint, args.to, args.out, verify=not args.no_verify,
                             force=args.force, model=args.model, input_shape=args.input_shape)
    except VerificationError as e:
        print(f"skylark export: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:  # bad usage or data: one line, naming the value
        return usage_error("export", e)
    p = rep["portable"]
    what = "torch program (torch.export)" if rep.get("program") else args.to
    print(f"wrote {rep['path']}: {what}, {len(p.state)} tensors, {p.dtype}, "
          f"input (C, H, W) = {p.input_shape}")
    v = rep["verification"]
    print(verify_line(args.to, v) if v else "not verified (--no-verify)")
    return 0


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="skylark export", formatter_class=HelpFormatter, description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
