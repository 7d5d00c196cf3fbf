"""`skylark fuzz`: random valid networks through every framework; each divergence shrunk.

    skylark fuzz --seconds 60 --seed 0 --frameworks torch,jax --workers 2
    skylark fuzz --cases 200 --seed 3 --out fuzz-out
    skylark fuzz --cluster tcp://10.0.0.5:8786 --seconds 3600
    skylark fuzz --replay fuzz-out/repro-0-17-torch.json --frameworks torch

Exit status: 0 when no new divergence was found (known deviations are reported, not
failures); 1 when one was (its shrunk repro written to --out), or when a requested framework
is MISSING unless --allow-missing; 2 on bad usage. How it works: docs/fuzz.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from skylark.cli import HelpFormatter, positive_int, seed_int

from ..frameworks import parse_frameworks

HELP = "random valid networks through every framework; divergences shrunk to repros"
DESCRIPTION = ("Generate random valid models (every layer kind and graph op, random shapes, "
               "both dtypes, random, tie- and kink-heavy inputs), compare every tensor of each "
               "with every framework as `skylark check` does (plus finite differences on "
               "numpy for a sample), shrink each new divergence and write its repro.")
EXIT_CODES = ("exit status: 0 no new divergence; 1 a new divergence (repros in --out), or a "
              "framework MISSING (unless --allow-missing); 2 bad usage.")


def positive_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0. "
                                         f"Received: seconds={text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    if not parser.epilog:
        parser.epilog = EXIT_CODES
    parser.add_argument("--seconds", type=positive_seconds, default=None,
                        help="stop starting cases after this long (default: 60 unless "
                             "--cases is given)")
    parser.add_argument("--cases", type=positive_int, default=None,
                        help="run exactly cases 0 .. N-1 (with --seconds: whichever ends "
                             "first); the same seed and N give the same verdicts anywhere")
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="the campaign's seed: case i is generated from (seed, i) alone")
    parser.add_argument("--frameworks", type=parse_frameworks, default="all", metavar="LIST",
                        help="comma-separated, or 'all'; numpy is the reference")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="local worker processes, each starting the frameworks once")
    parser.add_argument("--cluster", metavar="ADDRESS", default=None,
                        help="run on the Dask scheduler at ADDRESS (tcp://host:8786) instead "
                             "of local workers (pip install 'skylark[fuzz]')")
    parser.add_argument("--out", default="fuzz-out", metavar="DIR",
                        help="where the shrunk repros and summary.json go")
    parser.add_argument("--no-fd", action="store_true",
                        help="skip the finite-difference oracle (numpy alone) on the sampled "
                             "float64 random-input cases")
    parser.add_argument("--no-shrink", action="store_true",
                        help="report failures unshrunk (no repro files)")
    parser.add_argument("--replay", metavar="PATH", default=None,
                        help="run one saved repro's case again and print its verdict")
    parser.add_argument("--allow-missing", action="store_true",
                        help="a framework that is not installed is reported, not a failure")
    return parser


def _summary_lines(s: dict) -> list[str]:
    lines = [f"\nskylark fuzz: seed {s['seed']}, {s['cases']} cases in {s['seconds']:.0f} s "
             f"({s['cases_per_s']:.2f} cases/s), frameworks {','.join(s['frameworks'])}",
             "  " + ", ".join(f"{n} {k}" for k, n in s["counts"].items())]
    for f, why in s["missing"].items():
        lines.append(f"  MISSING {f} (NOT checked): {why}")
    for sig, d in s["divergences"].items():
        lines.append(f"  NEW {sig}: {d['cases']} cases, first case {d.get('index')}; "
                     f"{d.get('detail', '')}")
        if d.get("command"):
            lines.append(f"      repro ({d['blocks']} blocks, {d['tries']} shrink runs): "
                         f"{d['command']}")
    for kid, n in s["known"].items():
        lines.append(f"  KNOWN {kid}: {n} cases (reference.fuzz.known; docs/known_deviations.md)")
    for why, n in s["inexpressible"].items():
        lines.append(f"  inexpressible in the references ({n} cases; numpy's own oracles ran): "
                     f"{why}")
    return lines


def _replay(args, frameworks) -> int:
    from ..fuzz.oracle import Oracle
    from ..fuzz.repro import load_plan

    try:
        plan = load_plan(args.replay)
    except ValueError as e:
        print(f"skylark fuzz: error: {e}", file=sys.stderr)
        return 2
    with Oracle(frameworks, fd=not args.no_fd, log=_log) as oracle:
        verdict = oracle.run(plan, index=0)
    print(json.dumps({k: v for k, v in verdict.items() if k != "plan"}, indent=1))
    return 1 if verdict["status"] == "fail" else 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _backend(args):
    if args.cluster:
        from ..fuzz.cluster import DaskBackend

        return DaskBackend(args.cluster)
    from ..fuzz.campaign import LocalBackend

    return LocalBackend(args.workers)


def run(args: argparse.Namespace) -> int:
    from ..fuzz.campaign import run_campaign

    try:
        frameworks = parse_frameworks(args.frameworks)
    except argparse.ArgumentTypeError as e:
        print(f"skylark fuzz: error: argument --frameworks: {e}", file=sys.stderr)
        return 2
    if args.replay:
        return _replay(args, frameworks)
    seconds = args.seconds or (None if args.cases else 60.0)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` closes the workers as Ctrl-C does
    try:
        backend = _backend(args)
    except (ValueError, OSError) as e:
        print(f"skylark fuzz: error: {e}", file=sys.stderr)
        return 2
    try:
        summary = run_campaign(backend, frameworks, args.seed, seconds=seconds,
                               cases=args.cases, out=args.out, fd=not args.no_fd,
                               shrink=not args.no_shrink, log=_log)
    except BaseException:  # Ctrl-C, kill: stop the workers now
        backend.close(abort=True)
        raise
    backend.close()
    print("\n".join(_summary_lines(summary)))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    if summary["divergences"]:
        print(f"\nskylark fuzz FAILED: {len(summary['divergences'])} new divergence(s)")
        return 1
    if summary["missing"] and not args.allow_missing:
        print(f"\nskylark fuzz FAILED: MISSING {', '.join(summary['missing'])} "
              "(pass --allow-missing to accept)")
        return 1
    print("\nskylark fuzz passed: no new divergence")
    return 0


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="skylark fuzz", formatter_class=HelpFormatter, description=DESCRIPTION))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
