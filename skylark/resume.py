"""What a checkpoint records about its run, and the rules for resuming it.

A resumed run must be the run that was interrupted: `--resume` refuses a checkpoint whose
recorded configuration (RESUME_KEYS: lr, batch size, momentum, the optimizer and its options,
the schedule, clipping, seed, dtype, dataset name and contents, model architecture, loss
options) differs from this run's, unless `allow_changed`;
then the change is appended to the checkpoint's "changes" list, which every later checkpoint of
the run keeps. Metadata and optimizer state are validated before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from .model import CheckpointError, Sequential, check_entry
from .models import to_config

RESUME_KEYS = ("lr", "batch_size", "momentum", "optimizer", "schedule", "clip", "seed", "dtype",
               "dataset", "data_sha256", "model", "loss")
# What a checkpoint written before optimizers had options meant: SGD, constant lr, no clipping.
LEGACY = {"optimizer": {"name": "sgd", "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
          "schedule": {"name": "constant"}, "clip": None}
HISTORY_KEYS = ("loss", "accuracy", "test_accuracy")


def data_fingerprint(data) -> str:
    """sha256 of the images (as float32, so float32 and float64 runs agree) and labels: a
    different dataset of the same name and shape is told apart."""
    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test):
        a = np.ascontiguousarray(a, np.float32 if a.dtype.kind == "f" else np.int64)
        h.update(str(a.shape).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def model_dtype(model: Sequential) -> str:
    state = model.state()
    return next(iter(state.values())).dtype.name if state else "float32"


def run_config(model: Sequential, data, *, optimizer: dict, batch_size: int, seed: int,
               loss: dict | None, schedule: dict | None = None, clip: dict | None = None) -> dict:
    """The configuration a checkpoint records and a resumed run must match (JSON-able;
    "model" is `skylark.models.to_config(model)`; "optimizer" is optimizer_config's dict less
    lr and momentum, which keep their own keys), and the data's "input_shape" (C, H, W), which
    `skylark export` reads (not a RESUME_KEY: the model and data_sha256 already pin it)."""
    loss = loss or {}
    config = {
        "lr": float(optimizer["lr"]), "batch_size": int(batch_size),
        "momentum": float(optimizer.get("momentum", 0.0)),
        "optimizer": {k: v for k, v in optimizer.items() if k not in ("lr", "momentum")},
        "schedule": schedule or {"name": "constant"}, "clip": clip,
        "seed": int(seed), "dtype": model_dtype(model), "dataset": data.name,
        "data_sha256": data_fingerprint(data), "input_shape": list(data.input_shape),
        "model": to_config(model),
        "loss": {"label_smoothing": float(loss.get("label_smoothing", 0.0)),
                 "reduction": loss.get("reduction", "mean")},
    }
    return json.loads(json.dumps(config))  # tuples -> lists: compares equal to a loaded one


def recorded(meta: dict, key: str):
    """The checkpoint's value of `key`; LEGACY's meaning when an older checkpoint lacks it."""
    return meta.get(key, LEGACY.get(key))


def changes(meta: dict, config: dict) -> dict:
    """key -> {"from": recorded value (None when not recorded), "to": this run's value}."""
    return {k: {"from": recorded(meta, k), "to": config[k]} for k in RESUME_KEYS
            if recorded(meta, k) != config[k]}


def describe_changes(changed: dict) -> str:
    """One line: `lr 0.2 -> 0.1, model (architecture differs)`."""
    parts = []
    for k, c in changed.items():
        if c["from"] is None:
            parts.append(f"{k} (not recorded in the checkpoint)")
        elif k == "model":
            parts.append("model (architecture differs)")
        elif k == "data_sha256":
            parts.append("dataset contents (same name, different images or labels)")
        elif isinstance(c["from"], dict) and isinstance(c["to"], dict):
            keys = [x for x in {**c["from"], **c["to"]} if c["from"].get(x) != c["to"].get(x)]
            parts += [f"{k} {x} {c['from'].get(x)!r} -> {c['to'].get(x)!r}" for x in keys]
        else:
            parts.append(f"{k} {c['from']!r} -> {c['to']!r}")
    return ", ".join(parts)


def check_resume(meta: dict, config: dict, path, allow_changed: bool) -> list[dict]:
    """The checkpoint's change log, extended by this resume's changes when `allow_changed`;
    CheckpointError naming every change otherwise."""
    changed = changes(meta, config)
    log = list(meta.get("changes", []))
    if changed and not allow_changed:
        raise CheckpointError(
            f"--resume {str(path)!r} was trained with other settings; refusing to mix two "
            f"runs: {describe_changes(changed)} (pass --allow-changed to continue with this "
            f"run's values; the change is recorded in the checkpoint)")
    if changed:
        log.append({"at_epoch": int(meta["epoch"]), **changed})
    return log


def validate_metadata(meta: dict, path) -> None:
    """CheckpointError unless `meta` has what resuming reads: an epoch count, a history of
    that many test accuracies, and a list of changes."""
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"checkpoint {str(path)!r}: metadata 'epoch' must be an int >= 0. "
                              f"Received: epoch={epoch!r}")
    hist = meta.get("history")
    if not isinstance(hist, dict) or sorted(hist) != sorted(HISTORY_KEYS) or not all(
            isinstance(v, list) and all(_number(x) for x in v) for v in hist.values()):
        raise CheckpointError(f"checkpoint {str(path)!r}: metadata 'history' must map "
                              f"{HISTORY_KEYS} to lists of numbers. Received: {str(hist)[:80]}")
    if len(hist["loss"]) != len(hist["accuracy"]) or len(hist["test_accuracy"]) != epoch:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: metadata 'history' does not fit epoch={epoch}. Received: "
            f"{len(hist['loss'])} losses, {len(hist['accuracy'])} accuracies, "
            f"{len(hist['test_accuracy'])} test accuracies")
    if not isinstance(meta.get("changes", []), list):
        raise CheckpointError(f"checkpoint {str(path)!r}: metadata 'changes' must be a list. "
                              f"Received: {meta['changes']!r}")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def optimizer_state(extra: dict, model: Sequential, optimizer, path) -> dict:
    """The optimizer state of a checkpoint, checked against the model's parameters and the
    optimizer's buffers (names, shapes, finite values representable in the parameter's dtype)
    and cast to that dtype. Keys: a parameter's name (SGD's momentum buffer), or
    "{buffer}/{parameter}" and "step" (skylark.optim.base)."""
    params = model.params()
    buffers = getattr(optimizer, "active_buffers", lambda: ())()
    out = {}
    for k, v in extra.items():
        if k == "step" and buffers:
            v = np.asarray(v)
            if v.shape != () or v.dtype.kind not in "iu" or int(v) < 0:
                raise CheckpointError(f"checkpoint {str(path)!r}: the optimizer's step count "
                                      f"must be one int >= 0. Received: {v!r}")
            out[k] = np.array(int(v), np.int64)
            continue
        buf, _, name = k.rpartition("/") if "/" in k else ("", "", k)
        if name not in params or (buf and buf not in buffers) or (not buf and buffers):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: optimizer state that this optimizer "
                f"({type(optimizer).__name__}) and model do not have. Received: {k!r}")
        try:
            check_entry(k, np.asarray(v), params[name])
        except ValueError as e:
            raise CheckpointError(f"checkpoint {str(path)!r}: the optimizer state of {e}") \
                from None
        out[k] = np.asarray(v).astype(params[name].dtype)
    return out
