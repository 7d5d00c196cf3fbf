"""`skylark import PATH --from torch|keras|tf|onnx --model NAME --out CKPT.npz`: another
framework's weights file as a skylark checkpoint that `train --resume` and `export` read.

The checkpoint records its architecture (metadata "model", skylark.models.to_config) and input
shape. Before it is written, the file is run in its own framework and compared with numpy on
the imported weights (--no-verify skips that). Exit status: 0 written; 1 the verification
failed (nothing written); 2 bad usage or data (a missing file, weights that do not fit the
model: every missing, unexpected and mis-shaped entry named; an --out that exists without
--force), one line naming the value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skylark.cli import HelpFormatter
from skylark.models import from_config, to_config

from ..porting import TARGETS, check_format, check_out, read_weights, verify_file, verify_line
from .export_cmd import add_common, usage_error

HELP = "read torch, Keras, TensorFlow or ONNX weights into a skylark checkpoint"
DESCRIPTION = ("A torch state_dict, Keras .weights.h5, TensorFlow SavedModel (as `skylark "
               "export` writes it) or ONNX model as a skylark .npz checkpoint for --model.")
EPILOG = ("exit status: 0 written; 1 the file's own outputs disagree with numpy's (nothing "
          "written); 2 bad usage or data.")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.epilog = parser.epilog or EPILOG
    parser.add_argument("path", metavar="PATH", help="the weights file (tf: the folder)")
    parser.add_argument("--from", dest="source", required=True, metavar="|".join(TARGETS),
                        help="the framework that wrote it")
    parser.add_argument("--out", required=True, metavar="CKPT.npz", help="the checkpoint")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="the checkpoint's dtype (default: the file's; Keras: float32)")
    add_common(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    shape = args.input_shape or (1, 28, 28)
    try:
        check_format(args.source, "--from")  # the flag, not the function's framework=
        out = check_out(args.out, "npz", args.force, suffix=".npz")
        p = read_weights(args.path, args.source, args.model or "skylark", shape, args.dtype)
        v = None if args.no_verify else verify_file(args.path, args.source, p)
    except (ValueError, OSError) as e:
        return usage_error("import", e)
    if v is not None and not v["ok"]:
        print(f"skylark import: {args.source} file {args.path!r} not imported: "
              + verify_line(args.source, v), file=sys.stderr)
        return 1
    net = from_config([dict(s) for s in p.spec], dtype=p.dtype)
    net.load_state(p.state)
    meta = {"model": to_config(net), "input_shape": list(p.input_shape),
            "imported_from": {"framework": args.source, "path": str(Path(args.path))}}
    net.save(out, metadata=meta)
    print(f"wrote {out}: {len(p.state)} tensors from {args.source} {args.path}, {p.dtype}, "
          f"input (C, H, W) = {p.input_shape}")
    print(verify_line(args.source, v) if v else "not verified (--no-verify)")
    return 0


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="skylark import", formatter_class=HelpFormatter, description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
