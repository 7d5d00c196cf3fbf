"""The `skylark` command (also `python -m skylark`): `train` here, more commands from plugins.

argparse only, and neither a framework nor the `reference` package is imported here: `check` and
`compare` are registered by `reference` under the entry-point group "skylark.commands" (see
pyproject.toml). Each entry point names a module with HELP, DESCRIPTION, `add_arguments(parser)`
and `run(args) -> exit status`; the argument parsers below are shared by every command.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from importlib.metadata import entry_points

from . import __version__

COMMANDS_GROUP = "skylark.commands"

EPILOG = """examples:
  skylark compare                       train every framework in lockstep on digits, plot curves
  skylark compare --optimizer adam --schedule cosine --warmup 10 --clip-norm 1
                                        the same with Adam, each framework's own optimizer
  skylark check --dtype float64         every tensor of every framework against numpy
  skylark train --dataset fashion-mnist --epochs 3 --save ckpt.npz

exit status: 0 ok, 1 a check failed (or training diverged, or a checkpoint could not be
written), 2 bad usage or bad/missing data, 130 Ctrl-C, 143 SIGTERM."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the uninformative None/False of optional flags."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _number(cast, s: str, ok, expected: str):
    try:
        v = cast(s)
    except ValueError:
        v = None
    if v is None or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}. Received: {s!r}")
    return v


def positive_int(s: str) -> int:
    return _number(int, s, lambda v: v >= 1, "an integer >= 1")


def seed_int(s: str) -> int:
    return _number(int, s, lambda v: v >= 0, "an integer >= 0")


def positive_float(s: str) -> float:
    return _number(float, s, lambda v: 0 < v < float("inf"), "a finite number > 0")


def momentum(s: str) -> float:
    return _number(float, s, lambda v: 0 <= v < 1, "a number in [0, 1)")


def probability(s: str) -> float:
    return _number(float, s, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model and the loss options: what `train`, `compare` and `check` share."""
    p.add_argument("--model", default="skylark", metavar="NAME|FILE",
                   help="skylark, lenet5 (28x28 inputs), vgg-bn; the graph zoo: resnet, "
                        "mobilenet-v2, densenet, shufflenet, inception, efficientnet; a .json "
                        "model file (a Sequential, e.g. docs/example_model.json, or a graph, "
                        "docs/example_graph.json), module:function returning a skylark "
                        "Graph or Sequential, or a .npz checkpoint that records its "
                        "architecture (its weights are the start)")
    p.add_argument("--label-smoothing", type=probability, default=0.0, metavar="EPS",
                   help="cross-entropy label smoothing (torch's and Keras' definition)")


def add_sgd_arguments(p: argparse.ArgumentParser, dtype: str, dtype_help: str) -> None:
    """The options `train` and `compare` share: model, data, batch, optimizer, schedule, seed,
    dtype."""
    add_model_arguments(p)
    p.add_argument("--dataset", default="digits",
                   help="digits, fashion-mnist, mnist ($SKYLARK_MNIST_DIR), cifar-10 "
                        "($SKYLARK_CIFAR10_DIR), or a folder: the four MNIST-format IDX files, or "
                        "CIFAR-10's binary version (cifar-10-batches-bin); nothing is downloaded")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per optimizer step")
    add_optimizer_arguments(p)
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the initial weights and batches")
    p.add_argument("--dtype", choices=("float32", "float64"), default=dtype, help=dtype_help)
    p.add_argument("--threads", type=positive_int, default=1,
                   help="threads per math library (1 is fastest for this small net)")


def betas(s: str) -> tuple[float, float]:
    parts = s.split(",")
    try:
        pair = tuple(float(x) for x in parts)
    except ValueError:
        pair = ()
    if len(pair) != 2 or not all(0 <= b < 1 for b in pair):
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1), e.g. 0.9,0.999. "
                                         f"Received: {s!r}")
    return pair


def non_negative_float(s: str) -> float:
    return _number(float, s, lambda v: 0 <= v < float("inf"), "a finite number >= 0")


def non_negative_int(s: str) -> int:
    return _number(int, s, lambda v: v >= 0, "an integer >= 0")


def add_optimizer_arguments(p: argparse.ArgumentParser) -> None:
    """The optimizer, its options (torch's names and defaults), clipping and the schedule."""
    from .optim import DEFAULT_LR, OPTIMIZERS, SCHEDULES, UNITS

    g = p.add_argument_group("optimizer (torch.optim's conventions; an option the optimizer "
                             "does not take is an error)")
    g.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd",
                   help="the update rule, as torch.optim's class of that name")
    g.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate [default: " + ", ".join(
                       f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + "]")
    g.add_argument("--momentum", type=momentum, default=None,
                   help="sgd, rmsprop [default: 0]; sgd: v = m*v + g, p -= lr*v")
    g.add_argument("--dampening", type=probability, default=None,
                   help="sgd [default: 0]: v = m*v + (1 - dampening)*g after the first step")
    g.add_argument("--nesterov", action="store_true", default=None,
                   help="sgd: p -= lr*(g + m*v) (needs --momentum, no dampening)")
    g.add_argument("--weight-decay", type=non_negative_float, default=None,
                   help="L2 added to the gradient (sgd, adam, rmsprop) [default: 0]; decoupled "
                        "p *= 1 - lr*wd (adamw) [default: 0.01]")
    g.add_argument("--betas", type=betas, default=None, metavar="B1,B2",
                   help="adam, adamw [default: 0.9,0.999]")
    g.add_argument("--eps", type=positive_float, default=None,
                   help="adam, adamw, rmsprop [default: 1e-8]; added outside the square root "
                        "(and, in adam, to the bias-corrected one), as torch")
    g.add_argument("--amsgrad", action="store_true", default=None, help="adam, adamw")
    g.add_argument("--alpha", type=momentum, default=None,
                   help="rmsprop's smoothing constant [default: 0.99; Keras' rho: 0.9]")
    g.add_argument("--centered", action="store_true", default=None, help="rmsprop")
    g.add_argument("--clip-norm", type=positive_float, default=None, metavar="MAX",
                   help="clip the gradients' global 2-norm to MAX (torch's clip_grad_norm_: "
                        "g *= min(1, MAX/(norm + 1e-6)))")
    g.add_argument("--clip-per-tensor", action="store_true",
                   help="with --clip-norm: clip each parameter's gradient on its own instead")
    s = p.add_argument_group("learning-rate schedule (torch's lr_scheduler formulas)")
    s.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="step: lr*gamma^(t // step-size); cosine: down to --min-lr over the "
                        "run (CosineAnnealingLR)")
    s.add_argument("--schedule-unit", choices=UNITS, default="step",
                   help="what t counts: optimizer steps, or epochs (the rate then changes "
                        "only between epochs)")
    s.add_argument("--warmup", type=non_negative_int, default=0, metavar="N",
                   help="linear warmup over the first N units: lr*(t+1)/N (never 0)")
    s.add_argument("--step-size", type=positive_int, default=None, metavar="N",
                   help="--schedule step: units between decays (required)")
    s.add_argument("--gamma", type=positive_float, default=0.1,
                   help="--schedule step: the decay factor")
    s.add_argument("--min-lr", type=non_negative_float, default=0.0,
                   help="--schedule cosine: the final rate")


def optimizer_from_args(args) -> tuple[dict, dict | None]:
    """(optimizer_config's dict, clip_config's dict or None) from the options above;
    ValueError naming the value when they do not fit together."""
    from .optim import clip_config, optimizer_config

    options = {k: getattr(args, k) for k in ("momentum", "dampening", "nesterov",
                                            "weight_decay", "betas", "eps", "amsgrad", "alpha",
                                            "centered")}
    try:
        config = optimizer_config(args.optimizer, args.lr, **options)
    except ValueError as e:  # name the flag as typed: weight_decay -> --weight-decay
        raise ValueError(str(e).replace("does not take ", "does not take --").replace(
            "weight_decay (", "weight-decay (")) from None
    if args.clip_per_tensor and args.clip_norm is None:
        raise ValueError("--clip-per-tensor needs --clip-norm MAX. Received: --clip-norm=None")
    return config, clip_config(args.clip_norm, args.clip_per_tensor)


def schedule_from_args(args, total: int):
    """The Schedule of the options above over a run of `total` units (steps or epochs)."""
    from .optim import Schedule

    if args.schedule != "step" and args.step_size is not None:
        raise ValueError(f"--step-size applies to --schedule step. Received: "
                         f"--schedule {args.schedule}, --step-size {args.step_size}")
    return Schedule(args.schedule, total=total, unit=args.schedule_unit, warmup=args.warmup,
                    step_size=args.step_size, gamma=args.gamma, min_lr=args.min_lr)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_sgd_arguments(p, "float32", "the dtype the network computes in")
    p.add_argument("--epochs", type=positive_int, default=10, help="passes over the train set")


def plugin_commands() -> dict:
    """name -> module of every command registered under COMMANDS_GROUP (sorted by name)."""
    return {ep.name: ep.load() for ep in sorted(entry_points(group=COMMANDS_GROUP),
                                                key=lambda ep: ep.name)}


def build_parser() -> argparse.ArgumentParser:
    commands = plugin_commands()
    epilog = EPILOG if commands else EPILOG + (
        "\n\n`check` and `compare` come with the reference package, registered when skylark is "
        "installed: pip install -e .")
    parser = argparse.ArgumentParser(
        prog="skylark",
        description="A NumPy CNN whose every gradient is verified against PyTorch, "
                    "TensorFlow and Keras.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skylark {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in commands.items():
        p = sub.add_parser(name, formatter_class=HelpFormatter, help=mod.HELP,
                           description=mod.DESCRIPTION)
        mod.add_arguments(p)
        p.set_defaults(run=mod.run)
    train = sub.add_parser("train", formatter_class=HelpFormatter,
                           help="train the NumPy Skylark net",
                           description="NumPy-only training with a progress bar, test accuracy "
                                       "per epoch, atomic checkpoints and --resume.")
    add_train_arguments(train)
    train.add_argument("--save", metavar="PATH", help="checkpoint (.npz) written every epoch")
    train.add_argument("--resume", metavar="PATH",
                       help="continue from this checkpoint (refused if it was trained with "
                            "other settings, see --allow-changed)")
    train.add_argument("--allow-changed", action="store_true",
                       help="let --resume continue with changed settings (lr, batch size, "
                            "optimizer and its options, schedule, clipping, seed, dtype, "
                            "dataset, model); the change is recorded in the checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    from .data import check_dataset, load_dataset
    from .files import check_output_file
    from .models import build_model
    from .optim.config import describe as describe_optimizer
    from .threads import limit_threads
    from .train import DivergedError, SaveError, fit

    limit_threads(args.threads)
    try:
        if args.save is not None:  # before any training, not after the first epoch
            check_output_file(args.save, "--save", suffix=".npz")
        data = load_dataset(args.dataset, dtype=args.dtype)
        model = build_model(args.model, data.input_shape, num_classes=data.num_classes,
                            seed=args.seed, dtype=args.dtype)
        check_dataset(data)  # no images: said before the schedule has nothing to span
        optimizer, clip = optimizer_from_args(args)
        per_epoch = -(-len(data.x_train) // args.batch_size)  # the last batch may be short
        total = args.epochs * (per_epoch if args.schedule_unit == "step" else 1)
        schedule = schedule_from_args(args, total)
    except (ValueError, OSError, ImportError) as e:  # OSError: missing or unreadable data
        print(f"skylark train: error: {e}", file=sys.stderr)
        return 2
    print(f"{data!r}, model {args.model}, {describe_optimizer(optimizer)}", file=sys.stderr)
    try:
        hist = fit(model, data, epochs=args.epochs, batch_size=args.batch_size,
                   optimizer=optimizer, schedule=schedule, clip=clip, seed=args.seed,
                   save=args.save, resume=args.resume,
                   progress=not args.quiet, allow_changed=args.allow_changed,
                   loss={"label_smoothing": args.label_smoothing})
    except (DivergedError, SaveError) as e:
        print(f"skylark train: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # empty data, a bad --resume checkpoint, an lr the dtype loses
        print(f"skylark train: error: {e}", file=sys.stderr)
        return 2
    if hist.test_accuracy:
        print(f"final test accuracy: {hist.test_accuracy[-1]:.4f}")
    if args.save:
        print(f"checkpoint: {args.save}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same
    cleanup runs (workers closed, temporaries removed)."""

    signum = signal.SIGTERM


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        return args.run(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        signum = getattr(e, "signum", signal.SIGINT)
        what = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"\nskylark {args.command}: {what}", file=sys.stderr)
        return 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

if __name__ == "__main__":
    sys.exit(main())
