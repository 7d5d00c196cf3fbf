"""The checkpoint oracle (numpy alone) on the cases the training oracle samples (plan["train"]).

    failures = checkpoint_failures(plan, layers, tmp_dir)

With skylark's own `fit` (what `skylark train --save/--resume` runs) on a dataset of the case's
batch (one step per epoch), each a finding when it does not hold:

- interrupted after `resume_at` steps (a checkpoint written by `--save`), resumed into freshly
  built model and optimizer objects, the run ends bit-identical to the uninterrupted one: the
  same losses, the same weights and buffers;
- resuming that checkpoint with one optimizer option changed (its weight decay) is refused,
  and the model is left as it was (nothing loaded);
- a float64 checkpoint holding a value that overflows float32 is refused by a float32 model
  (all or nothing), while the same checkpoint without it loads as its float32 rounding;
- a gradient hook between backward and the step (one tensor's gradient doubled) trains the
  same whether it scales the array in place or binds a new array to the layer: the optimizer
  must use the gradient the layer holds, not a cached buffer the layer no longer uses.
"""

from __future__ import annotations

import os

import numpy as np

from skylark.data import Dataset
from skylark.layers import Dropout, StochasticDepth
from skylark.losses import softmax_cross_entropy
from skylark.model import CheckpointError
from skylark.models import from_config
from skylark.optim import Schedule, build_optimizer, clip_grad_norm_
from skylark.train import fit

from .train import batch


def checkpoint_failures(plan: dict, layers: list[dict], tmp: str) -> list[dict]:
    """The findings of the oracles above on `plan` (files go to the folder `tmp`)."""
    out = []
    for who, check in (("numpy-checkpoint", _resumed), ("numpy-checkpoint", _refused),
                       ("numpy-checkpoint", _overflow), ("numpy-train", _hooked)):
        try:
            detail = check(plan, layers, tmp)
        except Exception as e:  # skylark crashed saving, loading or training: a finding
            detail = (f"{check.__name__.strip('_')} raised {type(e).__name__}",
                      f"{type(e).__name__}: {e}")
        if detail:
            out.append({"framework": who, "signature": f"{who} FAIL: {detail[0]}",
                        "detail": detail[1]})
    return out


def _model(plan: dict, layers, seed_shift: int = 0, dtype=None):
    return from_config(layers, dtype=dtype or plan["dtype"], seed=plan["seed"] + seed_shift)


def _data(plan: dict, layers) -> Dataset:
    x, labels = batch(plan)
    x = x.astype(plan["dtype"])
    return Dataset("fuzz-case", x, labels, x, labels, int(labels.max()) + 1)


def _fit(plan: dict, model, data, epochs: int, **kw):
    t = plan["train"]
    return fit(model, data, epochs=epochs, batch_size=len(data.x_train),
               optimizer=dict(t["optimizer"], **kw.pop("options", {})),
               schedule=Schedule.from_dict(t["schedule"]), clip=t["clip"], seed=plan["seed"],
               progress=False, log=lambda msg: None,
               loss={"label_smoothing": plan["label_smoothing"], "reduction": plan["reduction"]},
               **kw)


def _resumed(plan, layers, tmp):
    """(what, detail) when the resumed run is not the uninterrupted one, else None."""
    t, data = plan["train"], _data(plan, layers)
    whole = _model(plan, layers)
    want = _fit(plan, whole, data, t["steps"])
    path = os.path.join(tmp, "interrupted.npz")
    _fit(plan, _model(plan, layers), data, t["resume_at"], save=path)
    again = _model(plan, layers, seed_shift=1)  # other initial weights: the load must set them
    got = _fit(plan, again, data, t["steps"], resume=path)
    where = f"resumed after step {t['resume_at']} of {t['steps']}"
    if got.loss != want.loss:
        return ("a resumed run left the uninterrupted one",
                f"{where}: losses {got.loss} != uninterrupted {want.loss}")
    bad = [k for k, v in whole.state().items() if not np.array_equal(again.state()[k], v)]
    if bad:
        return ("a resumed run left the uninterrupted one",
                f"{where}: {bad[0]} differs from the uninterrupted run's by "
                f"{np.abs(again.state()[bad[0]] - whole.state()[bad[0]]).max():.2e}")
    return None


def _refused(plan, layers, tmp):
    """(what, detail) when resuming with a changed weight decay is not refused, or loads."""
    t, data = plan["train"], _data(plan, layers)
    path = os.path.join(tmp, "interrupted.npz")
    model = _model(plan, layers, seed_shift=1)
    before = {k: v.copy() for k, v in model.state().items()}
    wd = t["optimizer"]["weight_decay"] + 0.01
    try:
        _fit(plan, model, data, t["steps"], resume=path, options={"weight_decay": wd})
    except CheckpointError:
        if all(np.array_equal(v, before[k]) for k, v in model.state().items()):
            return None
        return ("a refused resume loaded the checkpoint", "weights changed by a refused resume")
    return ("a resume with a changed optimizer was accepted",
            f"weight_decay {t['optimizer']['weight_decay']} -> {wd}: no CheckpointError")


def _overflow(plan, layers, tmp):
    """(what, detail) unless a float32 model refuses a float64 checkpoint holding 1e300 (and
    keeps its weights) and loads the same checkpoint without it as its float32 rounding."""
    rng = np.random.default_rng((plan["seed"], 5))
    big, small = _model(plan, layers, dtype="float64"), _model(plan, layers, 2, "float32")
    params = big.params()
    if not params:
        return None
    ok = os.path.join(tmp, "f64.npz")
    big.save(ok)
    small.load(ok)
    bad = [k for k, v in big.state().items()
           if not np.array_equal(small.state()[k], v.astype(np.float32))]
    if bad:
        return ("a float64 checkpoint loaded into float32 is not its rounding", bad[0])
    name = str(rng.choice(sorted(params)))
    params[name].flat[int(rng.integers(params[name].size))] = 1e300 * rng.choice([-1, 1])
    big.save(os.path.join(tmp, "f64-overflow.npz"))
    before = {k: v.copy() for k, v in small.state().items()}
    try:
        with np.errstate(over="ignore"):  # an unchecked cast is reported below, not warned
            small.load(os.path.join(tmp, "f64-overflow.npz"))
    except CheckpointError:
        if all(np.array_equal(v, before[k]) for k, v in small.state().items()):
            return None
        return ("a refused checkpoint was partly loaded", f"1e300 in {name}")
    return ("a float64 value that overflows float32 was loaded",
            f"1e300 in {name} became {small.state()[name].max():g} without a word")


def _hooked(plan, layers, tmp):
    """(what, detail) when one tensor's gradient, doubled between backward and the step,
    trains differently scaled in place and bound anew (see the module docstring)."""
    rng = np.random.default_rng((plan["seed"], 6))
    names = sorted(_model(plan, layers).params())
    if not names:
        return None
    name = str(rng.choice(names))
    in_place, rebound = _train_hooked(plan, layers, name, True), \
        _train_hooked(plan, layers, name, False)
    bad = [k for k, v in in_place.items() if not np.array_equal(rebound[k], v)]
    if bad:
        return ("a gradient bound anew before the step was not used",
                f"{name}'s gradient doubled: {bad[0]} differs by "
                f"{np.abs(rebound[bad[0]] - in_place[bad[0]]).max():.2e}")
    return None


def _train_hooked(plan, layers, name: str, in_place: bool) -> dict:
    """The state after plan["train"]'s steps on the case's batch, `name`'s gradient doubled
    between backward and the step (in place, or as a new array bound to the layer)."""
    t = plan["train"]
    model, data = _model(plan, layers), _data(plan, layers)
    noisy = [(j, layer) for j, layer in enumerate(model)
             if isinstance(layer, (Dropout, StochasticDepth))]
    opt = build_optimizer(model, t["optimizer"])
    lrs = Schedule.from_dict(t["schedule"]).lrs(t["optimizer"]["lr"], range(t["steps"]))
    node, _, param = name.rpartition(".")
    for step, lr in enumerate(lrs):
        model.train()
        for j, layer in noisy:  # the same noise in both runs, as `fit` draws it
            layer.reseed((plan["seed"], step, j))
        _, d = softmax_cross_entropy(model.forward(data.x_train), data.y_train,
                                     label_smoothing=plan["label_smoothing"],
                                     reduction=plan["reduction"])
        opt.zero_grad()
        model.backward(d, input_grad=False)
        grads = model[node].grads
        if in_place:
            grads[param] *= 2
        else:
            grads[param] = grads[param] * 2
        if t["clip"] is not None:
            clip_grad_norm_(model, t["clip"]["max_norm"], t["clip"]["per_tensor"])
        opt.lr = lr
        opt.step()
    return {k: v.copy() for k, v in model.state().items()}
