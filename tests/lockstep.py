"""One float64 training run of a framework, recorded the way `skylark compare` records it, for
the optimizer tests (test_optim_grid.py, test_optim_traps.py)."""

from __future__ import annotations

import numpy as np

from reference.commands.compare import weight_probe
from reference.spec import describe
from skylark.data import load_dataset
from skylark.models import build_model

BATCH = 16


def digits_case():
    """(data, spec, state): the Skylark net on the 8x8 digits, float64."""
    data = load_dataset("digits", dtype="float64")
    model = build_model("skylark", data.input_shape, num_classes=10, seed=0, dtype="float64")
    return data, describe(model), model.state()


def record(runner, case, config, clip, schedule, lrs) -> dict:
    """{"losses": [...], "probes": [...]} of `runner` trained from `case` with the optimizer
    `config`, `clip` and `schedule` (a Schedule or None), one batch of BATCH images per lr."""
    data, spec, state = case
    runner.setup(spec, state, "float64", data.input_shape)
    runner.train_setup(optimizer=config, clip=clip,
                       schedule=schedule.to_dict() if schedule else None)
    rec = {"losses": [], "probes": []}
    for i, lr in enumerate(lrs):
        idx = np.arange(i * BATCH, (i + 1) * BATCH)
        rec["losses"].append(runner.train_step(data.x_train[idx], data.y_train[idx], lr=lr))
        rec["probes"].append(weight_probe(runner.get_params()))
    return rec
