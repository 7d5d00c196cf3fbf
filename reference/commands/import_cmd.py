"""`skylark import PATH --from torch|keras|tf|onnx --model NAME --out CKPT.npz`: another
framework's weights file as a skylark checkpoint that `train --resume` and `export` read.

`skylark import MODEL --out CKPT.npz` (no --from): a whole model as its author wrote it, its
architecture and weights (a .onnx or .keras file, or module:function returning a torch
nn.Module, with --state-dict for its weights, or a keras.Model; reference.importers), proven
against its own runtime before it is written. `--list-unsupported MODEL` lists everything in it
skylark cannot express, at once.

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

HELP = "read a model (ONNX, Keras, torch) or another framework's weights into a checkpoint"
DESCRIPTION = ("A whole model as its author wrote it (a .onnx or .keras file, or module:function "
               "returning a torch nn.Module or a keras.Model), or, with --from, a torch "
               "state_dict, Keras .weights.h5, TensorFlow SavedModel (as `skylark export` "
               "writes it) or ONNX model's weights for --model's architecture, as a skylark "
               ".npz checkpoint.")
EPILOG = ("examples: `skylark import net.onnx --out net.npz`, `skylark import "
          "torchvision.models:resnet18 --input-shape 3,64,64 --out r18.npz`, `skylark import "
          "--list-unsupported model.keras`. Exit status: 0 written (--list-unsupported: nothing "
          "unsupported); 1 the model's own outputs disagree with the import's (nothing "
          "written), or --list-unsupported found something; 2 bad usage, or a file that cannot "
          "be read or imported.")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.epilog = parser.epilog or EPILOG
    parser.add_argument("path", metavar="PATH", help="the model (.onnx, .keras, module:function), "
                        "or with --from the weights file (tf: the folder)")
    parser.add_argument("--from", dest="source", default=None, metavar="|".join(TARGETS),
                        help="read only the weights of a file written for --model's "
                             "architecture, by this framework")
    parser.add_argument("--out", metavar="CKPT.npz", help="the checkpoint")
    parser.add_argument("--state-dict", metavar="FILE",
                        help="a torch module's weights (read with torch.load(weights_only=True): "
                             "a file that needs code to load is refused)")
    parser.add_argument("--list-unsupported", action="store_true",
                        help="list every op, attribute or pattern of PATH skylark cannot "
                             "express, and write nothing")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="the checkpoint's dtype (default: the file's; Keras: float32)")
    add_common(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.list_unsupported:
        return _list_unsupported(args)
    if args.out is None:
        return usage_error("import", ValueError("--out CKPT.npz is required"))
    if args.source is None:
        return _import_model(args)
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


def _list_unsupported(args) -> int:
    from ..importers.sources import open_source, unsupported

    try:
        items = unsupported(open_source(args.path), input_shape=args.input_shape)
    except (ValueError, OSError) as e:
        return usage_error("import", e)
    for item in items:
        print(item)
    print(f"{args.path}: {len(items)} unsupported" if items else
          f"{args.path}: nothing unsupported", file=sys.stderr)
    return 1 if items else 0


def _import_model(args) -> int:
    """A whole model: architecture and weights, proven against its own runtime."""
    from ..importers.sources import import_source, open_source
    from ..verify_port import fidelity

    try:
        if args.model:
            raise ValueError(f"--model names the architecture of a weights file read with "
                             f"--from; a whole model brings its own. Received: --model "
                             f"{args.model}")
        out = check_out(args.out, "npz", args.force, suffix=".npz")
        src = open_source(args.path)
        imp = import_source(src, input_shape=args.input_shape, state_dict=args.state_dict)
        shape = tuple(args.input_shape or imp.input_shape or ())
        if len(shape) != 3:
            raise ValueError(f"{src.label} does not record its input size: pass --input-shape "
                             f"C,H,W")
        dtype = args.dtype or ("float64" if any(v.dtype == "float64" for v in imp.state.values())
                               else "float32")
        net = imp.graph(dtype)
        rows = [] if args.no_verify else [fidelity(src, imp, shape, 4, 0, kind)
                                          for kind in ("random", "ties")]
    except (ValueError, OSError) as e:
        return usage_error("import", e)
    for n in imp.notes:
        print(f"skylark import: note: {n}", file=sys.stderr)
    said = "; ".join(f"{r['input']} max|a-b| {r['max_abs']:.2e} "
                     f"{'<=' if r['ok'] else '>'} {r['budget']:.2e}" for r in rows)
    if rows and not all(r["ok"] for r in rows):
        print(f"skylark import: {src.label} not imported: the import does not reproduce "
              f"{src.kind}'s own logits ({said})", file=sys.stderr)
        return 1
    meta = {"model": to_config(net), "input_shape": list(shape),
            "imported_from": {"framework": src.kind, "path": src.label}}
    net.save(out, metadata=meta)
    print(f"wrote {out}: {len(net.nodes)} layers, {len(imp.state)} tensors from {src.kind} "
          f"{src.label}, {dtype}, input (C, H, W) = {shape}")
    print(f"verified against {src.kind}'s own logits ({said})" if rows else
          "not verified (--no-verify)")
    return 0


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="skylark import", formatter_class=HelpFormatter, description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
