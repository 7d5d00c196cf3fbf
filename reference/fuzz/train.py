"""The training oracle: a few optimizer steps of the case's model on the case's batch, numpy
against every started framework that trains, in `skylark compare`'s lockstep.

    plan["train"] = draw_train(seed, index)        # on every TRAIN_EVERY-th case, else None
    failures = lockstep_failures(plan, layers, runners)

The run is compare's: the same initial state, batch, dropout masks, optimizer (each
framework's own, set to torch's step), learning rate per step (one skylark.optim.Schedule) and
clipping; each step's loss and, after each step, every tensor's probe are compared with
numpy's by compare's `first_divergence` at its float64 lockstep bar. It always runs in float64,
whatever the case's dtype: compare has no float32 verdict (float32 runs drift apart by design).
A framework whose optimizer cannot be set to torch's step (compare's NotExpressible) is
reported as inexpressible, never as passing.

After a passing lockstep, a planted gap: copies of that framework's record with one loss (or one
tensor's probe) moved by a few times the bar, random sign, must be flagged by compare's
functions at that step and tensor, and one moved by a fraction of it must not.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from skylark.models import from_config
from skylark.optim import Schedule, clip_config, optimizer_config

from ..commands.compare import _train_plan, first_divergence
from ..inputs import make_batch
from ..runners.numpy_ref import NumpyRunner
from ..runners.runner import NotExpressible
from ..spec import describe, geometry, loss_invariant
from .plan import NUM_CLASSES
from .signature import describe_tensor

TRAIN_EVERY = 3  # the oracle runs on cases 1, 4, 7, ... (the reuse oracle has 0, 3, 6, ...)
STREAM = 4  # its draws come from default_rng((seed, index, STREAM)): the others' stay as they were
# compare's float64 lockstep bar as compare documents it (1e-9 relative to max(1, |numpy's|)),
# stated again here: the planted gaps are sized from this, not from compare's constant, so a
# compare whose bar was loosened (or lost its abs or its relative scale) is caught
BAR = 1e-9


def draw_train(seed: int, index: int) -> dict | None:
    """The optimizer, clipping, schedule and step count of case `index`'s training oracle
    (JSON-able), or None on the cases it skips."""
    if index % TRAIN_EVERY != 1:
        return None
    rng = np.random.default_rng((int(seed), int(index), STREAM))
    steps = int(rng.integers(3, 5))
    optimizer = _draw_optimizer(rng)
    clip = None
    if rng.random() < 0.4:  # max norms around typical gradient norms: some steps clip
        clip = clip_config(float(rng.choice([0.01, 0.1, 1.0])), bool(rng.random() < 0.5))
    return {"steps": steps, "optimizer": optimizer, "clip": clip,
            "schedule": _draw_schedule(rng, steps), "resume_at": int(rng.integers(1, steps))}


def _draw_optimizer(rng) -> dict:
    name = str(rng.choice(["sgd", "sgd", "adam", "adamw", "rmsprop"]))
    # AdamW's point is its decoupled decay (torch's default 1e-2): never 0 there
    wd = float(rng.choice([1e-2, 0.1] if name == "adamw" else [0.0, 0.0, 1e-2, 0.1]))
    if name == "sgd":
        momentum = float(rng.choice([0.0, 0.5, 0.9]))
        nesterov = bool(momentum and rng.random() < 0.4)
        dampening = 0.0 if nesterov or not momentum else float(rng.choice([0.0, 0.3]))
        return optimizer_config("sgd", float(rng.choice([0.05, 0.2])), momentum=momentum,
                                nesterov=nesterov, dampening=dampening, weight_decay=wd)
    if name in ("adam", "adamw"):
        betas = [(0.9, 0.999), (0.8, 0.99), (0.5, 0.9)][int(rng.integers(3))]
        return optimizer_config(name, float(rng.choice([1e-3, 1e-2])), betas=betas,
                                eps=float(rng.choice([1e-8, 1e-6, 1e-3])),
                                amsgrad=bool(rng.random() < 0.3), weight_decay=wd)
    return optimizer_config("rmsprop", float(rng.choice([1e-3, 1e-2])),
                            alpha=float(rng.choice([0.99, 0.9])),
                            centered=bool(rng.random() < 0.4),
                            momentum=float(rng.choice([0.0, 0.5])),
                            eps=float(rng.choice([1e-8, 1e-3])), weight_decay=wd)


def _draw_schedule(rng, steps: int) -> dict:
    name = str(rng.choice(["constant", "step", "cosine"]))
    warmup = int(rng.integers(0, 3)) if rng.random() < 0.4 else 0
    sched = Schedule(name, total=steps, unit="step", warmup=min(warmup, steps - 1),
                     step_size=1 if name == "step" else None, gamma=0.5,
                     min_lr=float(rng.choice([0.0, 1e-4])))
    return sched.to_dict()


def batch(plan: dict):
    """(x, labels) of the case, in float64: the batch `skylark check` would trace (every plan
    ends in NUM_CLASSES logits)."""
    x, labels, _ = make_batch(plan["input"], plan["batch"], tuple(plan["input_shape"]),
                              NUM_CLASSES, plan["seed"], "float64")
    return x, labels


def _args(plan: dict) -> argparse.Namespace:
    """What compare's `_train_plan` reads: the seed (dropout masks), quiet, and the recipe."""
    t = plan["train"]
    sched = Schedule.from_dict(t["schedule"])
    recipe = argparse.Namespace(optimizer=t["optimizer"], clip=t["clip"], schedule=sched,
                                lrs=sched.lrs(t["optimizer"]["lr"], range(t["steps"])))
    return argparse.Namespace(seed=plan["seed"], quiet=True, recipe=recipe)


def record(runner, plan: dict, spec, params0) -> dict:
    """The framework's record of the lockstep run (compare's: losses, probes), status "ok",
    "not expressible" (with the reason) or "failed" (the exception)."""
    shape, args = tuple(plan["input_shape"]), _args(plan)
    x, labels = batch(plan)
    data = argparse.Namespace(x_train=x, y_train=labels, input_shape=shape)
    steps = [(0, np.arange(len(x)))] * plan["train"]["steps"]
    rec = {"framework": runner.name, "status": "ok", "losses": [], "accuracies": [],
           "probes": []}
    try:
        runner.setup(spec, params0, "float64", shape,
                     loss={"label_smoothing": plan["label_smoothing"]})
        runner.train_setup(optimizer=args.recipe.optimizer, clip=args.recipe.clip,
                           schedule=plan["train"]["schedule"])
        _train_plan(runner, rec, runner.name, spec, data, steps, args)
    except NotExpressible as e:
        return {**rec, "status": "not expressible", "reason": str(e)}
    except Exception as e:  # a framework (or numpy) that crashed: a finding
        return {**rec, "status": "failed", "reason": f"{type(e).__name__}: {e}"}
    return rec


def lockstep_failures(plan: dict, layers: list[dict], runners: dict, rng=None) -> tuple:
    """(failures, inexpressible {framework: reason}) of the lockstep run of `plan["train"]`
    against each runner in `runners` that trains; the planted-gap probe on each that passes."""
    model = from_config(layers, dtype="float64", seed=plan["seed"])
    spec = describe(model)
    geometry(spec, plan["input_shape"])  # ValueError: the references cannot mirror it
    params0 = {k: v.copy() for k, v in model.state().items()}
    ref = record(NumpyRunner(), plan, spec, params0)
    if ref["status"] != "ok":
        return [_failure("numpy", "ERROR", ref["reason"], layers)], {}
    skip = tuple(loss_invariant(spec))
    rng = rng or np.random.default_rng((plan["seed"], STREAM))
    failures, unable = schedule_failures(plan) if "torch" in runners else [], {}
    for name, runner in runners.items():
        if not runner.supports_gradients:
            continue
        rec = record(runner, plan, spec, params0)
        if rec["status"] == "not expressible":
            unable[name] = rec["reason"]
        elif rec["status"] != "ok":
            failures.append(_failure(name, "ERROR", rec["reason"], layers))
        elif (d := first_divergence(rec, ref, skip)) is not None:
            failures.append(_failure(name, d, None, layers))
        else:
            failures += planted_gap(rec, ref, skip, rng)
    return failures, unable


def torch_rates(schedule: dict, base_lr: float, steps: int) -> list[float]:
    """The rates torch's own lr_scheduler objects give (reference.runners.torch_optim), stepped
    once per optimizer step."""
    import torch

    from ..runners.torch_optim import torch_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched, out = torch_scheduler(opt, Schedule.from_dict(schedule)), []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def schedule_failures(plan: dict) -> list[dict]:
    """[] when skylark's rates (which every framework in the lockstep is given) are torch's
    lr_scheduler's: the lockstep alone cannot see a wrong rate, all sides take the same one.
    Within 1e-13 relative: torch's chainable forms (cosine's recurrence, LinearLR's ratio of
    factors) round differently from the closed forms, by a few ulps per step over <= 4 steps."""
    t = plan["train"]
    ours = _args(plan).recipe.lrs
    theirs = torch_rates(t["schedule"], t["optimizer"]["lr"], t["steps"])
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if not abs(a - b) <= 1e-13 * abs(b) + 1e-16:
            return [{"framework": "torch", "signature": f"torch FAIL train schedule: step "
                                                        f"{i + 1} learning rate",
                     "detail": f"{t['schedule']}: skylark's rates {ours}, torch's {theirs}"}]
    return []


def _failure(framework: str, d, reason, layers) -> dict:
    if d == "ERROR":
        return {"framework": framework, "detail": reason,
                "signature": f"{framework} ERROR train: {reason.split(':', 1)[0]}"}
    what = "loss" if d["tensor"] == "loss" else describe_tensor(f"d.{d['tensor']}", layers)
    what = what.removesuffix(" gradient")  # a probe of the tensor itself, not its gradient
    return {"framework": framework, "signature": f"{framework} FAIL train step {d['step']}: "
                                                 f"{what}",
            "detail": f"step {d['step']}: {d['tensor']} off numpy's by {d['gap']:.2e} relative "
                      f"(compare's lockstep bar {BAR:g})"}


def planted_gap(rec: dict, ref: dict, skip, rng) -> list[dict]:
    """[] when compare's first_divergence flags a copy of `rec` with one loss, then one tensor
    probe, moved off numpy's by 2-10 times the bar (random sign, step and tensor) at exactly
    that step and tensor, and flags neither when moved by 0.5-0.9 of it."""
    tensors = [k for k in rec["probes"][0] if k not in skip]
    out = []
    for what in ["loss", *([str(rng.choice(tensors))] if tensors else [])]:
        step, sign = int(rng.integers(len(rec["losses"]))), float(rng.choice([-1.0, 1.0]))
        for factor, flagged in ((float(rng.uniform(2, 10)), True),
                                (float(rng.uniform(0.5, 0.9)), False)):
            moved = _moved(rec, ref, what, step, sign * factor)
            d = first_divergence(moved, ref, skip)
            hit = d is not None and (d["step"], d["tensor"]) == (step + 1, what)
            if hit != flagged or (not flagged and d is not None):
                out.append({"framework": "numpy-lockstep",
                            "signature": "numpy-lockstep FAIL: a planted gap "
                                         + ("missed" if flagged else "flagged"),
                            "detail": f"{what} at step {step + 1} moved by {sign * factor:+.2f}"
                                      f" x the bar {BAR:g}: first_divergence gave {d}"})
    return out


def _moved(rec: dict, ref: dict, what: str, step: int, times: float) -> dict:
    """A copy of `rec` whose `what` ("loss" or a tensor) at `step` is numpy's value plus `times`
    the bar, scaled as the bar is (by max(1, |numpy's value|))."""
    moved = copy.deepcopy({k: rec[k] for k in ("losses", "probes")})
    if what == "loss":
        want = ref["losses"][step]
        moved["losses"][step] = want + times * BAR * max(1.0, abs(want))
    else:
        want = ref["probes"][step][what]
        moved["probes"][step][what] = want + times * BAR * max(1.0, abs(want))
    return moved
