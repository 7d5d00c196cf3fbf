"""The lockstep grid: every optimizer, with its options, a schedule and clipping, trained for 50
float64 steps in every framework with that framework's own optimizer, in step with numpy at
every step (loss and every weight, compare's bar); a framework whose optimizer cannot express a
configuration is reported so (reference.optim_rules), and checked to be exactly those cases."""

from __future__ import annotations

import pytest
from conftest import TRAINING_PARAMS
from lockstep import digits_case, record

from reference.commands.compare import first_divergence
from reference.optim_rules import inexpressible
from reference.runners.runner import NotExpressible
from skylark.optim import Schedule, optimizer_config

STEPS = 50
PER_EPOCH = 10  # the step schedule per epoch: an "epoch" of 10 steps here

GRID = [  # (optimizer config, clip, schedule)
    (optimizer_config("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
     {"max_norm": 0.5, "per_tensor": False}, Schedule("cosine", total=STEPS, warmup=5)),
    (optimizer_config("sgd", 0.1, momentum=0.8, dampening=0.3),
     None, Schedule("step", total=STEPS, step_size=15, gamma=0.5)),
    (optimizer_config("adam", 3e-3),
     {"max_norm": 1.0, "per_tensor": False}, Schedule("cosine", total=STEPS, warmup=5)),
    (optimizer_config("adam", 3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2,
                      amsgrad=True), {"max_norm": 0.2, "per_tensor": True}, Schedule()),
    (optimizer_config("adamw", 3e-3, weight_decay=0.1),
     None, Schedule("step", total=STEPS // PER_EPOCH, unit="epoch", step_size=2, gamma=0.3)),
    (optimizer_config("adamw", 3e-3, amsgrad=True),
     {"max_norm": 0.5, "per_tensor": False}, Schedule("cosine", total=STEPS, min_lr=1e-4)),
    (optimizer_config("rmsprop", 1e-3, alpha=0.9, momentum=0.5, centered=True,
                      weight_decay=1e-3), None, Schedule("cosine", total=STEPS, warmup=3)),
    (optimizer_config("rmsprop", 1e-3), {"max_norm": 0.5, "per_tensor": True}, Schedule()),
]


def _lrs(config, schedule: Schedule) -> list[float]:
    units = range(STEPS) if schedule.unit == "step" else [i // PER_EPOCH for i in range(STEPS)]
    return schedule.lrs(config["lr"], units)


@pytest.fixture(scope="module")
def case():
    return digits_case()


def _train(runner, case, config, clip, schedule) -> dict:
    return record(runner, case, config, clip, schedule, _lrs(config, schedule))


@pytest.fixture(scope="module")
def numpy_runs(case, reference_runner):
    runner = reference_runner("numpy")
    return [_train(runner, case, *row) for row in GRID]


# "keras" is Keras on its default backend, TensorFlow: keras-tensorflow's code path again
GRID_PARAMS = [p for p in TRAINING_PARAMS if p.values[0] != "keras"]


@pytest.mark.slow
@pytest.mark.parametrize("framework", GRID_PARAMS)
def test_every_optimizer_trains_in_lockstep(framework, case, numpy_runs, reference_runner):
    if framework == "numpy":
        pytest.skip("numpy is the reference")
    runner = reference_runner(framework)
    ran, unable = 0, []
    for (config, clip, schedule), ref in zip(GRID, numpy_runs, strict=True):
        what = f"{config} clip={clip} schedule={schedule.to_dict()}"
        if inexpressible(framework, config):
            with pytest.raises(NotExpressible, match="eps inside the square root"):
                _train(runner, case, config, clip, schedule)
            unable.append(config["name"])
            continue
        found = first_divergence(_train(runner, case, config, clip, schedule), ref)
        assert found is None, f"{framework} left lockstep: {found} with {what}"
        ran += 1
    # what no framework's optimizer can express is RMSprop on Keras and raw TF, nothing else
    assert set(unable) <= {"rmsprop"}
    assert bool(unable) == (framework == "tf" or framework.startswith("keras"))
    assert ran >= 6
