"""`skylark compare`: every framework trains a model in lockstep; curves and a summary.

Same initial weights (copied from one skylark model), same batches (one precomputed plan), the
same optimizer (each framework's own, configured to torch's step: reference.optim_rules), the
same learning rate at every step (one skylark.optim.Schedule), the same clipping. Each framework
runs the whole plan in turn, with its own progress bar, and is compared step by step with
numpy's losses and, after every step, with numpy's weights (a random projection per tensor), so
a divergence is named by its first step and the first tensor it reached.

Registered as the `skylark compare` command (entry-point group "skylark.commands").
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from skylark.cli import add_sgd_arguments, optimizer_from_args, positive_int, schedule_from_args
from skylark.data import batches, check_dataset, load_dataset
from skylark.files import check_output_folder
from skylark.optim.config import describe as describe_optimizer
from skylark.progress import bar
from skylark.train import check_hyperparameters

from ..frameworks import COMPARED, FRAMEWORKS, parse_frameworks, pin_threads
from ..importers.sources import extend_model_help, resolve_model
from ..inputs import dropout_masks
from ..results import replace_results
from ..runners.registry import get_runner
from ..runners.runner import FrameworkUnavailable, NotExpressible
from ..runners.startup import Startup
from ..spec import describe, geometry, loss_invariant, shapes
from .compare_forward import predict_record, summary_row, table_tail

HELP = "train every framework in lockstep and plot the curves"
DESCRIPTION = ("Every framework trains the model (--model) from the same initial weights on the "
               "same batches with the same optimizer (each framework's own, set to torch's "
               "step), learning-rate schedule, clipping and dropout masks; names the first "
               "step and tensor where a framework leaves lockstep; writes curves.png, "
               "curves.csv and summary.json.")

# float64 lockstep bar: every step's loss within 1e-9 of numpy's, relative to the loss once it
# exceeds 1: |Δloss| <= 1e-9 * max(1, |loss|). Both sides run the same math in float64, so
# their gap is accumulation-order rounding, which scales with the magnitude of the numbers: a
# few hundred ulps of the loss (ulp = 2.2e-16 * |loss|). After hundreds of SGD steps on losses
# of order 1 the observed gap is ~1e-14, five orders of magnitude under the bar; an absolute bar
# would fail runs whose losses grow large (--lr 1e6: losses of 1e221 agreeing to 5e-16
# relative), a purely relative one would demand more than float64 gives near loss 0. There is
# no float32 bar: float32 runs drift apart by design (its ulp is 1.2e-7), so compare plots that
# drift and gives no lockstep verdict.
LOCKSTEP_ATOL64 = 1e-9


def lockstep_gap(losses, ref) -> np.ndarray:
    """Per step |loss - numpy's loss| / max(1, |numpy's loss|): in lockstep while <= 1e-9."""
    ref = np.asarray(ref, np.float64)
    return np.abs(np.asarray(losses, np.float64) - ref) / np.maximum(1.0, np.abs(ref))


def lockstep(losses, ref_losses) -> bool:
    """Whether every step's loss is within the float64 lockstep bar of numpy's (nan is not)."""
    return bool(np.all(lockstep_gap(losses, ref_losses) <= LOCKSTEP_ATOL64))


_PROBES: dict[tuple[str, int], np.ndarray] = {}


def weight_probe(state: dict[str, np.ndarray]) -> dict[str, float]:
    """name -> r . w for each tensor w of the state, r a fixed standard-normal vector of w's
    size (seeded by the name): one number per tensor per step that moves with any change d of
    w, by about |d| (a sum would miss a permutation, a norm a sign), and whose rounding is
    ~1e-16 |w| sqrt(size): cheap enough to take after every step."""
    out = {}
    for k, w in state.items():
        w = np.asarray(w, np.float64).reshape(-1)
        r = _PROBES.get((k, w.size))
        if r is None:
            r = _PROBES[(k, w.size)] = np.random.default_rng(list(k.encode())).standard_normal(
                w.size)
        out[k] = float(r @ w)
    return out


def first_divergence(rec: dict, ref: dict, skip=()) -> dict | None:
    """The first optimizer step (1-based) where `rec` leaves the float64 lockstep bar of numpy's
    record `ref`, and what showed it first: "loss" (computed before that step's update) or the
    tensor whose probe moved furthest after that step; None while in lockstep throughout.
    `skip`: tensors left out of the verdict (reference.spec.loss_invariant)."""
    for i, (loss, probes) in enumerate(zip(rec["losses"], rec["probes"], strict=True)):
        if lockstep_gap([loss], [ref["losses"][i]])[0] > LOCKSTEP_ATOL64:
            return {"step": i + 1, "tensor": "loss",
                    "gap": float(lockstep_gap([loss], [ref["losses"][i]])[0])}
        gaps = probe_gaps(probes, ref["probes"][i], skip)
        worst = max(gaps, key=gaps.get) if gaps else None
        if worst is not None and not gaps[worst] <= LOCKSTEP_ATOL64:
            return {"step": i + 1, "tensor": worst, "gap": float(gaps[worst])}
    return None


def probe_gaps(probes: dict, ref: dict, skip=()) -> dict[str, float]:
    """|probe - numpy's probe| / max(1, |numpy's probe|) per tensor, but those in `skip`."""
    return {k: abs(v - ref[k]) / max(1.0, abs(ref[k])) for k, v in probes.items()
            if k not in skip}


def invariant_gaps(rec: dict, ref: dict, names) -> dict[str, float]:
    """The largest probe gap over the run of each loss-invariant tensor in `names`."""
    out = dict.fromkeys(names, 0.0)
    for probes, theirs in zip(rec["probes"], ref["probes"], strict=True):
        for k in names:
            gap = probe_gaps({k: probes[k]}, theirs)[k]
            out[k] = max(out[k], gap) if np.isfinite(gap) else float("inf")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_sgd_arguments(p, "float64", "float64 shows lockstep to 1e-9; float32 shows the real drift")
    extend_model_help(p)
    p.add_argument("--frameworks", type=parse_frameworks, default="all", metavar="LIST",
                   help=f"comma-separated, or 'all' (= {','.join(COMPARED)}); numpy, the "
                        "reference, always runs")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, default=None,
                        help="passes over the train set [default: 5, unless --steps]")
    length.add_argument("--steps", type=positive_int, default=None,
                        help="optimizer steps instead of epochs (they may span epochs)")
    p.add_argument("--out", default="compare-out", help="folder for curves.png/.csv, summary.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def schedule(n: int, batch_size: int, seed: int, epochs: int | None, steps: int | None):
    """The shared batch schedule: a list of (epoch, index array); epochs continue as needed.
    ValueError for n = 0: no epoch would ever add a batch."""
    if n < 1:
        raise ValueError(f"no training images to schedule batches from. Received: n={n}")
    out, epoch = [], 0
    while (steps is None and epoch < epochs) or (steps is not None and len(out) < steps):
        out += [(epoch, idx) for idx in batches(n, batch_size, seed, epoch)]
        epoch += 1
    return out if steps is None else out[:steps]


def recipe(args, optimizer: dict, clip: dict | None, plan) -> argparse.Namespace:
    """What every framework trains with: optimizer, clip, schedule, and each step's lr."""
    unit_of = [i if args.schedule_unit == "step" else epoch for i, (epoch, _) in enumerate(plan)]
    total = len(plan) if args.schedule_unit == "step" else plan[-1][0] + 1
    sched = schedule_from_args(args, total)
    return argparse.Namespace(optimizer=optimizer, clip=clip, schedule=sched,
                              lrs=sched.lrs(optimizer["lr"], unit_of))


def _accuracy(runner, x, y, chunk=1000) -> float:
    hits = sum(int((runner.predict(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum())
               for i in range(0, len(x), chunk))
    return hits / len(x)


def train_one(name, spec, params0, data, plan, args, starting=None, ref=None):
    """Train framework `name` over `plan`; returns its record (losses, accuracies, timings).

    `starting`: the reference.runners.startup.Startup starting it (the Keras workers start in
    parallel, in-process frameworks when their turn comes), or None for get_runner(name).
    A forward-only runtime runs numpy's trained state (`ref`, numpy's record) for predictions.
    """
    rec = {"framework": name, "status": "ok", "losses": [], "accuracies": [], "probes": []}
    recipe = args.recipe
    try:
        runner = starting.result(name) if starting is not None else get_runner(name)
    except FrameworkUnavailable as e:
        return {**rec, "status": "missing", "reason": e.reason}
    except Exception as e:  # a worker that failed to start: report it, run the others
        return {**rec, "status": "failed", "reason": f"{type(e).__name__}: {e}"}
    try:
        runner.setup(spec, params0, args.dtype, data.input_shape,
                      loss={"label_smoothing": args.label_smoothing})
        if not runner.supports_gradients:
            return predict_record(runner, rec, spec, ref, data, args.dtype)
        try:
            runner.train_setup(optimizer=recipe.optimizer, clip=recipe.clip,
                               schedule=recipe.schedule.to_dict())
        except NotExpressible as e:
            return {**rec, "status": "not expressible", "reason": str(e)}
        rec["versions"] = runner.versions()
        start = time.perf_counter()
        _train_plan(runner, rec, name, spec, data, plan, args)
        rec["seconds"] = time.perf_counter() - start
        rec["test_accuracy"] = _accuracy(runner, data.x_test, data.y_test)
        rec["params"] = runner.get_params()
    except Exception as e:  # one framework failing must not hide the others' results
        rec.update(status="failed", reason=f"{type(e).__name__}: {e}")
    finally:
        runner.close()
    return rec


def _train_plan(runner, rec, name, spec, data, plan, args) -> None:
    """Every step of `plan`, appending the loss, the batch accuracy before the update and the
    weights' probes after it to `rec`."""
    geo = geometry(spec, data.input_shape)
    with bar(len(plan), f"{name:>16}", disable=args.quiet) as pbar:
        for i, (_, idx) in enumerate(plan):
            xb, yb = data.x_train[idx], data.y_train[idx]
            acc = float((runner.predict(xb).argmax(1) == yb).mean())  # before the update
            # dropout: every framework drops what skylark's own training would at step i
            masks = dropout_masks(spec, data.input_shape, len(idx), args.seed, i, geo)
            loss = runner.train_step(xb, yb, masks=masks, lr=args.recipe.lrs[i])
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became non-finite at step {i + 1}")
            rec["probes"].append(weight_probe(runner.get_params()))
            rec["losses"].append(loss)
            rec["accuracies"].append(acc)
            pbar.update(1)
            if i % 10 == 0 or i == len(plan) - 1:
                pbar.set_postfix_str(f"loss {loss:.4f}")


def summarize(records, args, data) -> dict:
    ref = records[0]
    ref_loss = np.array(ref["losses"])
    recipe = args.recipe
    out = {"model": args.model, "label_smoothing": args.label_smoothing,
           "dataset": data.name, "dtype": args.dtype, "batch_size": args.batch_size,
           "lr": recipe.optimizer["lr"], "momentum": recipe.optimizer.get("momentum", 0.0),
           "optimizer": recipe.optimizer, "schedule": recipe.schedule.to_dict(),
           "clip": recipe.clip, "loss_invariant": list(recipe.invariant), "seed": args.seed,
           "steps": len(ref_loss), "lrs": list(recipe.lrs), "frameworks": {}}
    for r in records:
        s = {"status": r["status"]}
        if r["status"] != "ok":
            s["reason"] = r["reason"]
        elif r.get("forward_only"):
            s = summary_row(r)
            if args.dtype == "float64":  # its logits on numpy's weights, within the same bar
                s["lockstep"] = bool(s["max_logit_diff"] <= LOCKSTEP_ATOL64)
        else:
            diff = np.abs(np.array(r["losses"]) - ref_loss)
            gap = lockstep_gap(r["losses"], ref_loss)
            wdiff = max(float(np.abs(r["params"][k] - ref["params"][k]).max())
                        for k in ref["params"])
            s.update(final_test_accuracy=r["test_accuracy"], seconds=round(r["seconds"], 3),
                     max_loss_diff=float(diff.max()), max_lockstep_gap=float(gap.max()),
                     final_max_weight_diff=wdiff,
                     final_loss=r["losses"][-1], versions=r["versions"])
            if args.dtype == "float64" and r is not ref:
                s["first_divergence"] = first_divergence(r, ref, recipe.invariant)
                s["lockstep"] = s["first_divergence"] is None
                if recipe.invariant:  # reported, outside the verdict (loss_invariant)
                    s["loss_invariant_gaps"] = invariant_gaps(r, ref, recipe.invariant)
        out["frameworks"][r["framework"]] = s
    return out


def write_csv(f, records, lrs) -> None:
    """curves.csv into the binary file `f`: one row per framework and step, with the step's
    learning rate (the schedule every framework trained with)."""
    text = io.TextIOWrapper(f, newline="", encoding="utf-8")
    w = csv.writer(text)
    w.writerow(["framework", "step", "lr", "loss", "accuracy"])
    for r in records:
        for i, (loss, acc) in enumerate(zip(r["losses"], r["accuracies"], strict=True)):
            w.writerow([r["framework"], i + 1, repr(lrs[i]), repr(loss), acc])
    text.flush()
    text.detach()  # leave `f` open: its writer fsyncs and closes it


_STYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 2))]


def plot(records, summary):
    """curves.png's figure: loss per step (top) and the lockstep gap to numpy's loss on a log
    scale (bottom); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ok = [r for r in records if r["status"] == "ok" and not r.get("forward_only")]
    floor = 1e-17 if summary["dtype"] == "float64" else 1e-10
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    _plot_curves(top, bottom, ok, floor)
    missing = [r["framework"] for r in records if r["status"] != "ok"]
    sched = summary["schedule"]["name"]
    clip = summary["clip"]
    title = (f"{summary['model']} on {summary['dataset']} ({summary['dtype']}), batch "
             f"{summary['batch_size']}\n{describe_optimizer(summary['optimizer'], short=True)}"
             + (f", {sched} schedule" if sched != "constant" else "")
             + (f", clip norm {clip['max_norm']:g}" if clip else ""))
    if missing:
        title += f"\nnot run: {', '.join(missing)}"
    top.set_title(title)
    top.set_ylabel("training loss (mean cross-entropy)")
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    _style_gap_axis(bottom, summary["dtype"], floor, alone=len(ok) == 1)
    fig.tight_layout()
    return fig


def _plot_curves(top, bottom, ok, floor) -> None:
    """Each framework's loss (top) and its gap to numpy's (bottom)."""
    ref = np.array(ok[0]["losses"])
    steps = np.arange(1, len(ref) + 1)
    for i, r in enumerate(ok):
        style = _STYLES[i % len(_STYLES)]
        numpy = r["framework"] == "numpy"
        top.plot(steps, r["losses"], ls=style, lw=3.5 if numpy else 1.3, label=r["framework"],
                 alpha=0.5 if numpy else 0.9)
        if not numpy:
            # Per-step gaps hop between exact 0 and a few ulps: draw them as faint dots and
            # their running maximum as the line, so drift (or its absence) reads at a glance.
            d = np.maximum(lockstep_gap(r["losses"], ref), floor)
            bottom.plot(steps, d, ".", ms=2.5, alpha=0.35, color=f"C{i}")
            bottom.plot(steps, np.maximum.accumulate(d), ls=style, lw=1.5, color=f"C{i}",
                        label=r["framework"])


def _style_gap_axis(bottom, dtype: str, floor: float, alone: bool) -> None:
    if alone:
        bottom.text(0.5, 0.5, "no other framework ran", ha="center", transform=bottom.transAxes)
        bottom.set_ylim(floor, 1)
    bottom.set_yscale("log")
    if dtype == "float64":
        bottom.axhline(LOCKSTEP_ATOL64, color="red", lw=1, ls="--", label="lockstep bar 1e-9")
    bottom.set_ylabel(f"|loss − numpy loss| / max(1, |numpy loss|)\n(dots: per step, exact 0 "
                      f"at {floor:g};\nlines: running max)")
    bottom.set_xlabel("optimizer step")
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(loc="lower right", fontsize=8, ncol=4, framealpha=0.9)
    bottom.grid(alpha=0.3, which="both")


def write_results(out: Path, records, summary) -> None:
    """The table on stdout, then curves.csv, curves.png and summary.json in `out` as one set
    (reference.results: never beside files of an earlier run)."""
    print_table(summary)  # first: a failed write below still leaves the table on screen
    fig = plot(records, summary)
    lrs = summary["lrs"]
    writers = {"curves.csv": lambda f: write_csv(f, records, lrs),
               "summary.json": lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode())}
    if fig is not None:
        writers["curves.png"] = lambda f: fig.savefig(f, format="png", dpi=110)
    try:
        written = replace_results(out, writers)
    finally:
        if fig is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)
    print(f"\nwrote {', '.join(str(out / f) for f in written)}")
    if fig is None:
        print("curves.png not written: matplotlib is missing (pip install 'skylark[plot]')",
              file=sys.stderr)


def print_table(summary, file=None) -> None:
    file = file or sys.stdout  # looked up per call: a default bound at import misses redirection
    clip = summary["clip"]
    clipped = "no clipping" if clip is None else \
        f"clip norm {clip['max_norm']:g} ({'per tensor' if clip['per_tensor'] else 'global'})"
    print(f"\n{summary['steps']} steps on {summary['dataset']} ({summary['dtype']}), "
          f"batch {summary['batch_size']}, {describe_optimizer(summary['optimizer'], True)}, "
          f"{summary['schedule']['name']} schedule, {clipped}", file=file)
    head = f"{'framework':<17} {'status':<8} {'test acc':>8} {'seconds':>8} " \
           f"{'max|Δloss|':>11} {'max|Δw|':>10}  lockstep"
    print(head + "\n" + "-" * len(head), file=file)
    for name, s in summary["frameworks"].items():
        if s["status"] == "not expressible":
            print(f"{name:<17} {'N/A':<8} not expressible: {s['reason']}", file=file)
            continue
        if s["status"] != "ok":
            print(f"{name:<17} {s['status'].upper():<8} {s['reason']}", file=file)
            continue
        acc = f"{name:<17} {'ok':<8} {s['final_test_accuracy']:>8.4f} {s['seconds']:>8.2f} "
        if name == "numpy":
            print(acc + f"{'reference':>11} {'reference':>10}", file=file)
            continue
        if s.get("forward_only"):
            print(acc + table_tail(s), file=file)
            continue
        lock = {True: "ok", False: "FAIL"}.get(s.get("lockstep"), "n/a (float32: drift shown)")
        if s.get("first_divergence"):
            d = s["first_divergence"]
            lock += f" from step {d['step']}: {d['tensor']} (gap {d['gap']:.1e})"
        if s.get("loss_invariant_gaps"):
            lock += f"; loss-invariant state {max(s['loss_invariant_gaps'].values()):.0e}"
        print(acc + f"{s['max_loss_diff']:>11.2e} {s['final_max_weight_diff']:>10.2e}  {lock}",
              file=file)
    if summary.get("loss_invariant"):
        print(f"not in the weight verdict, as the loss does not depend on them (a shift that "
              f"BatchNorm subtracts, and the running means that average it in): "
              f"{', '.join(summary['loss_invariant'])}", file=file)


def train_all(names, spec, params0, data, plan, args) -> list[dict]:
    """train_one for every framework in `names` (numpy first), in that order."""
    # Keras workers are subprocesses that take seconds to import their backend: start them all
    # now, in parallel, while the in-process frameworks train.
    # (reference.runners.startup: a line per framework while it starts, a deadline for each.)
    workers = Startup([n for n in names if not FRAMEWORKS[n].in_process], get=get_runner)

    def starting(n):  # in-process: started when its turn comes (numpy needs no start-up)
        if n in workers.futures or n == "numpy":
            return workers if n != "numpy" else None
        return Startup([n], get=get_runner)

    records = []
    try:
        for n in names:  # numpy first: a forward-only runtime runs its trained state
            records.append(train_one(n, spec, params0, data, plan, args, starting(n),
                                     records[0] if records else None))
    except BaseException:  # Ctrl-C: close the workers that are up; don't wait for the rest
        workers.close_started()
        raise
    return records


def _model(args, data):
    """(model, spec) of --model at the data's size: a built-in or an import (whose output must
    be the data's classes)."""
    model, _, imp = resolve_model(args.model, data.input_shape, num_classes=data.num_classes,
                                  seed=args.seed, dtype=args.dtype)
    spec = describe(model)
    if imp is not None and shapes(spec, data.input_shape)[-1] != (data.num_classes,):
        raise ValueError(f"{args.model} must end in {data.num_classes} logits for "
                         f"{args.dataset}. Received: output shape "
                         f"{shapes(spec, data.input_shape)[-1]}")
    return model, spec


def run(args: argparse.Namespace) -> int:
    try:
        names = ["numpy", *parse_frameworks(args.frameworks)]
        check_output_folder(args.out, "--out")  # before any training, not after it
        data = check_dataset(load_dataset(args.dataset, dtype=args.dtype))
        optimizer, clip = optimizer_from_args(args)
        check_hyperparameters(args.dtype, lr=optimizer["lr"],
                              momentum=optimizer.get("momentum", 0.0))
        epochs = args.epochs if args.epochs or args.steps else 5
        plan = schedule(len(data.x_train), args.batch_size, args.seed, epochs, args.steps)
        args.recipe = recipe(args, optimizer, clip, plan)
    except (ValueError, argparse.ArgumentTypeError, OSError, ImportError) as e:
        print(f"skylark compare: error: {e}", file=sys.stderr)
        return 2
    print(f"threads: {pin_threads(args.threads)}", file=sys.stderr)
    try:
        model, spec = _model(args, data)
        geometry(spec, data.input_shape)  # what the references cannot mirror, named now
        args.recipe.invariant = tuple(loss_invariant(spec))
    except ValueError as e:
        print(f"skylark compare: error: {e}", file=sys.stderr)
        return 2
    params0 = {k: v.copy() for k, v in model.state().items()}
    print(f"{data!r}: {len(plan)} steps of batch {args.batch_size} for "
          f"{', '.join(names)}", file=sys.stderr)
    records = train_all(names, spec, params0, data, plan, args)
    if records[0]["status"] != "ok":
        print(f"skylark compare: numpy failed: {records[0]['reason']}", file=sys.stderr)
        return 1
    summary = summarize(records, args, data)
    try:
        write_results(Path(args.out), records, summary)
    except OSError as e:  # e.g. the disk filled up during the run
        print(f"skylark compare: error: cannot write the results ({e.strerror or e}); the "
              f"table above is the run's. Received: --out={args.out!r}", file=sys.stderr)
        return 1
    failed = [n for n, s in summary["frameworks"].items()
              if s["status"] == "failed" or s.get("lockstep") is False]
    missing = [n for n, s in summary["frameworks"].items() if s["status"] == "missing"]
    if missing:
        print(f"MISSING (not installed, not run): {', '.join(missing)}", file=sys.stderr)
    unable = [n for n, s in summary["frameworks"].items() if s["status"] == "not expressible"]
    if unable:
        print(f"NOT EXPRESSIBLE (this optimizer cannot be configured to torch's step, not run): "
              f"{', '.join(unable)}", file=sys.stderr)
    return 1 if failed else 0
