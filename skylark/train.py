"""The NumPy training loop: an optimizer (skylark.optim) over deterministic mini-batches, a
learning-rate schedule, clipping, checkpoints, resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Dataset, batches, check_dataset
from .layers import Dropout, StochasticDepth
from .losses import softmax_cross_entropy
from .model import CheckpointError, Sequential, read_checkpoint
from .optim import Schedule, build_optimizer, clip_grad_norm_, optimizer_config
from .progress import bar
from .resume import (
    check_resume,
    describe_changes,
    model_dtype,
    optimizer_state,
    recorded,
    run_config,
    validate_metadata,
)


class DivergedError(RuntimeError):
    """The loss became non-finite; the message names the step."""


class SaveError(RuntimeError):
    """A checkpoint could not be written (full disk, ...); the previous one is kept."""


@dataclass
class History:
    """Per step: loss and batch accuracy; per epoch: test accuracy."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


def evaluate(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` on (x (N, C, H, W), y (N,)), in chunks to bound memory, in
    evaluation mode (running statistics, no dropout); the model's mode is restored after.
    ValueError for no images (an accuracy of 0 images is undefined)."""
    if len(x) == 0:
        raise ValueError(f"evaluate needs at least one image. Received: x with shape {x.shape}")
    was_training, correct = model.training, 0
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            correct += int((model.forward(x[i : i + batch_size]).argmax(axis=1) ==
                            y[i : i + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / len(x)


def train_step(model: Sequential, opt, x: np.ndarray, y: np.ndarray, clip: dict | None = None,
               **loss_options) -> tuple[float, float]:
    """One optimizer step on a batch, in training mode; returns (loss, batch accuracy).
    `clip`: skylark.optim.clip_config's dict (clip_grad_norm_ between backward and step, as in
    torch) or None. `loss_options`: softmax_cross_entropy's (label_smoothing, reduction). Raises
    FloatingPointError when the logits are non-finite (the loss checks them)."""
    model.train()
    logits = model.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y, **loss_options)
    opt.zero_grad()
    model.backward(dlogits, input_grad=False)  # like torch: the images need no gradient
    if clip is not None:
        clip_grad_norm_(model, clip["max_norm"], clip["per_tensor"])
    opt.step()
    return float(loss), float((logits.argmax(axis=1) == y).mean())


def fit(
    model: Sequential,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float | None = None,
    momentum: float | None = None,
    optimizer: str | dict = "sgd",
    schedule: Schedule | None = None,
    clip: dict | None = None,
    seed: int = 0,
    save: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    log=print,
    loss: dict | None = None,
    allow_changed: bool = False,
) -> History:
    """Train for `epochs` (counting those a resumed checkpoint already did).

    `optimizer`: a name (sgd, adam, adamw, rmsprop; then `lr` and `momentum` apply, torch's
    defaults for the rest) or skylark.optim.optimizer_config's dict. `schedule`: a
    skylark.optim.Schedule spanning at least this run's units (epochs, or epochs * steps per
    epoch); None keeps lr constant. `clip`: skylark.optim.clip_config's dict or None.
    The batch order of epoch e is `batches(n, batch_size, seed, e)` and dropout's masks at
    global step t come from the generator (seed, t, layer index), so a resumed run sees the
    same batches, masks and learning rates as an uninterrupted one. `loss`:
    softmax_cross_entropy's options. With `save`, a checkpoint (with the optimizer's state) is
    written atomically after every epoch; if the loss turns non-finite, training stops with
    DivergedError and the last good checkpoint stays as it was (SaveError when a write fails).
    `resume` refuses another run's checkpoint (skylark.resume) unless `allow_changed`. Bad
    arguments: ValueError before any work (_check_arguments)."""
    config_opt = _optimizer(optimizer, lr, momentum)
    per_epoch = len(batches(len(data.x_train), batch_size, seed, 0)) if len(data.x_train) else 0
    schedule = _check_schedule(schedule, epochs, per_epoch)
    _check_arguments(model, data, epochs, batch_size, config_opt)
    opt = build_optimizer(model, config_opt)
    config = run_config(model, data, optimizer=config_opt, batch_size=batch_size, seed=seed,
                        loss=loss, schedule=schedule.to_dict(), clip=clip)
    hist, start, config["changes"] = History(), 0, []
    if resume is not None:
        start, hist, config["changes"] = _resume(model, opt, resume, epochs, log, config,
                                                 allow_changed)
    run = _Run(model, opt, data, hist, epochs, batch_size, seed, schedule, config_opt["lr"],
               loss or {}, clip, save, config, progress, log)
    for epoch in range(start, epochs):
        _fit_epoch(run, epoch)
    return hist


@dataclass
class _Run:
    """What every epoch of one `fit` reads."""

    model: Sequential
    opt: object
    data: Dataset
    hist: History
    epochs: int
    batch_size: int
    seed: int
    schedule: Schedule
    base_lr: float
    loss: dict
    clip: dict | None
    save: str | Path | None
    config: dict
    progress: bool
    log: object


def _fit_epoch(run: _Run, epoch: int) -> None:
    """Epoch `epoch` of `run`: its steps at the schedule's rates, the test accuracy, the log
    line and the checkpoint; DivergedError naming the step when the loss turns non-finite."""
    hist, data = run.hist, run.data
    order = batches(len(data.x_train), run.batch_size, run.seed, epoch)
    done = len(hist.loss)
    rates = run.schedule.lrs(run.base_lr, [done + i if run.schedule.unit == "step" else epoch
                                           for i in range(len(order))])
    try:
        with bar(len(order), f"epoch {epoch + 1}/{run.epochs}", disable=not run.progress) as pb:
            _train_epoch(run.model, run.opt, data, order, hist, pb, run.seed, run.loss, rates,
                         run.clip)
    except FloatingPointError:  # `hist` holds every step before the one that failed
        step, overall = len(hist.loss) - done + 1, len(hist.loss) + 1
        raise DivergedError(_divergence_message(epoch + 1, step, overall, run.opt.lr,
                                                run.save)) from None
    test_acc = evaluate(run.model, data.x_test, data.y_test)
    hist.test_accuracy.append(test_acc)
    run.log(f"epoch {epoch + 1}/{run.epochs}: train loss "
            f"{np.mean(hist.loss[-len(order):]):.4f}, test accuracy {test_acc:.4f}")
    if run.save is not None:
        _save(run.model, run.opt, run.save,
              {**run.config, "epoch": epoch + 1, "history": vars(hist)})


def _optimizer(optimizer, lr, momentum) -> dict:
    """optimizer_config's dict for fit's arguments."""
    if isinstance(optimizer, dict):
        if lr is not None or momentum is not None:
            raise ValueError(f"give lr and momentum inside the optimizer's dict, not beside it. "
                             f"Received: lr={lr!r}, momentum={momentum!r}")
        return optimizer_config(**optimizer)
    if lr is None:
        raise ValueError(f"fit needs a learning rate. Received: lr=None, optimizer={optimizer!r}")
    return optimizer_config(optimizer, lr, momentum=momentum)


def _check_schedule(schedule: Schedule | None, epochs: int, per_epoch: int) -> Schedule:
    """The schedule (constant when None), checked to cover this run's units. It may span more
    (these epochs are the first part of a longer run, resumed later), never fewer: past its
    end a cosine would climb again."""
    if schedule is None:
        return Schedule()
    total = epochs if schedule.unit == "epoch" else epochs * per_epoch
    if not schedule.factor_free() and schedule.total < total:
        raise ValueError(f"the schedule spans {schedule.total} {schedule.unit}s, fewer than this "
                         f"run's {total} ({epochs} epochs). Received: total={schedule.total}")
    return schedule


def _check_arguments(model: Sequential, data: Dataset, epochs, batch_size,
                     optimizer: dict) -> None:
    """Everything `fit` can check before any work (ValueError naming the value)."""
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int. Received: {name}={v!r}")
    check_dataset(data)
    check_hyperparameters(model_dtype(model), lr=optimizer["lr"],
                          momentum=optimizer.get("momentum", 0.0))


def check_hyperparameters(dtype, **values: float) -> None:
    """ValueError naming the value when `dtype` rounds a positive lr to 0 or inf, or a
    momentum in (0, 1) to 0 or 1: training would run and silently do something else."""
    dt = np.dtype(dtype)
    for name, v in values.items():
        if name == "momentum" and v == 0:
            continue
        with np.errstate(over="ignore", under="ignore"):
            r = float(np.array(v, np.float64).astype(dt))
        bad = r <= 0 or not np.isfinite(r) or (name == "momentum" and r >= 1)
        if bad:
            raise ValueError(f"{name} rounds to {r!r} in {dt.name}, which would not train as "
                             f"asked; pick another {name} or dtype. Received: {name}={v!r}")


def _save(model: Sequential, opt, path: str | Path, meta: dict) -> None:
    """model.save, with a full disk (or any OSError) reported as SaveError: the previous
    checkpoint at `path` is kept, as the write is atomic."""
    try:
        model.save(path, metadata=meta, extra=opt.state())
    except OSError as e:
        kept = (f"the checkpoint of the previous epoch is kept at {path}" if Path(path).is_file()
                else "no checkpoint was written")
        raise SaveError(f"cannot write the checkpoint after epoch {meta['epoch']} "
                        f"({e.strerror or e}); {kept}. Received: --save={str(path)!r}") from e


def _resume(model: Sequential, opt, path: str | Path, epochs: int, log, config: dict,
            allow_changed: bool) -> tuple[int, History, list]:
    """Load the checkpoint at `path` into `model` and `opt` (momentum buffers) once its
    metadata, configuration and optimizer state have passed their checks (nothing is loaded
    otherwise); returns its epoch count, its history (which training goes on appending to) and
    its change log."""
    arrays, meta, extra = read_checkpoint(path)
    validate_metadata(meta, path)
    change_log = check_resume(meta, config, path, allow_changed)
    if recorded(meta, "optimizer")["name"] == config["optimizer"]["name"]:
        state = optimizer_state(extra, model, opt, path)
    else:  # another optimizer's state (allow_changed let it through): start this one afresh
        state = {}
        log("the optimizer changed: its state starts afresh")
    try:
        model.load_state(arrays)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit this model: {e}") from e
    start = meta["epoch"]
    opt.load_state(state)
    hist = History(**meta["history"])
    log(f"resumed from {path} after epoch {start}")
    if len(change_log) > len(meta.get("changes", [])):
        changed = {k: v for k, v in change_log[-1].items() if k != "at_epoch"}
        log(f"resuming with changed settings (recorded in the checkpoint): "
            f"{describe_changes(changed)}")
    if start >= epochs:
        log(f"nothing to train: the checkpoint already has {start} epoch(s) and "
            f"--epochs is {epochs}; pass a larger --epochs to continue")
    return start, hist, change_log


def _train_epoch(model: Sequential, opt, data: Dataset, order: list[np.ndarray], hist: History,
                 pbar, seed: int, loss_options: dict, rates: list[float],
                 clip: dict | None) -> None:
    """One optimizer step per index batch of `order` at the learning rates `rates`, appending
    each step's loss and accuracy to `hist`. A non-finite loss escapes as FloatingPointError,
    `hist` holding the steps before."""
    # Dropout and StochasticDepth: the layers that draw noise in training
    dropouts = [(i, layer) for i, layer in enumerate(model)
                if isinstance(layer, (Dropout, StochasticDepth))]
    for i, (idx, lr) in enumerate(zip(order, rates, strict=True)):
        for j, layer in dropouts:
            layer.reseed((seed, len(hist.loss), j))
        opt.lr = lr
        # Overflow on the way to divergence is reported once, by `fit`, naming the step.
        with np.errstate(over="ignore", invalid="ignore"):
            loss, acc = train_step(model, opt, data.x_train[idx], data.y_train[idx], clip=clip,
                                   **loss_options)
        hist.loss.append(loss)
        hist.accuracy.append(acc)
        pbar.update(1)
        if i % 10 == 0 or i == len(order) - 1:
            pbar.set_postfix_str(f"loss {loss:.4g} train acc {np.mean(hist.accuracy[-50:]):.3f} "
                                 f"lr {lr:.3g}")


def _divergence_message(epoch: int, step: int, global_step: int, lr: float,
                        save: str | Path | None) -> str:
    """Where the loss turned non-finite (all counts 1-based) and what became of the checkpoint
    at `save`."""
    kept = ""
    if save is not None and Path(save).is_file():
        kept = f" The last good checkpoint is kept at {save}."
    elif save is not None:
        kept = " No checkpoint was written (none was complete yet)."
    return (
        f"the loss became non-finite (nan/inf logits) at epoch {epoch}, "
        f"step {step} (global step {global_step}), with lr={lr}. "
        f"Try a smaller --lr.{kept}"
    )
