"""The optimizer traps: each planted convention difference makes a framework leave lockstep at
the first step where the two conventions differ, and the check names the step and a tensor.

A plant is the framework's optimizer as a user might configure it, one convention off (see
reference.runners.runner.PLANTS); the same configuration unplanted stays in lockstep (the
control), so what diverges is the plant and not the setting."""

from __future__ import annotations

import json

import pytest
from lockstep import digits_case, record

from reference.commands.compare import first_divergence
from reference.runners.registry import get_runner
from skylark.optim import Schedule, optimizer_config

STEPS = 4

ADAM_L2 = optimizer_config("adam", 0.01, weight_decay=0.05)
SGD_MOMENTUM = optimizer_config("sgd", 0.2, momentum=0.9, nesterov=True)
SGD_DAMPENED = optimizer_config("sgd", 0.2, momentum=0.9, dampening=0.5)
RMSPROP = optimizer_config("rmsprop", 0.01)
AMSGRAD = optimizer_config("adam", 0.01, amsgrad=True)
ADAMW = optimizer_config("adamw", 0.01, weight_decay=0.1)
CLIP = {"max_norm": 0.05, "per_tensor": False}
WARMUP = Schedule("constant", total=STEPS, warmup=3)
PER_EPOCH = Schedule("cosine", total=3, unit="epoch")  # 2 steps an epoch (see _plan)

# plant, framework, optimizer, clip, schedule, the step it must leave lockstep at
TRAPS = [
    ("keras_adam_eps_uncorrected", "keras", ADAM_L2, None, None, 1),
    ("keras_adam_default_eps", "keras", ADAM_L2, None, None, 1),
    ("keras_adam_decoupled_decay", "keras", ADAM_L2, None, None, 1),
    ("keras_float32_hyperparameters", "keras", ADAM_L2, None, None, 1),
    # Keras' velocity holds the lr: equal at the first step, off once lr changes (step 2)
    ("keras_sgd_velocity_holds_lr", "keras", SGD_MOMENTUM, None, WARMUP, 2),
    ("keras_clipnorm_per_variable", "keras", SGD_MOMENTUM, CLIP, None, 1),
    ("keras_global_clipnorm", "keras", SGD_MOMENTUM, CLIP, None, 1),
    ("jax_rmsprop_eps_in_sqrt", "jax", RMSPROP, None, None, 1),
    ("jax_rmsprop_default_decay", "jax", RMSPROP, None, None, 1),
    ("jax_dampened_first_step", "jax", SGD_DAMPENED, None, None, 1),
    # both take max(0, v1) at the first step; they part when a gradient shrinks (step 2)
    ("jax_amsgrad_corrected_max", "jax", AMSGRAD, None, None, 2),
    ("jax_warmup_from_zero", "jax", SGD_MOMENTUM, None, WARMUP, 1),
    ("tf_adamw_decay_without_lr", "tf", ADAMW, None, None, 1),
    # per iteration, the scheduler moves after step 1; per epoch, not before step 3
    ("torch_schedule_per_iteration", "torch", SGD_MOMENTUM, None, PER_EPOCH, 2),
]


@pytest.fixture(scope="module")
def case():
    return digits_case()


def _lrs(config, schedule: Schedule | None) -> list[float]:
    if schedule is None:
        return [config["lr"]] * STEPS
    units = range(STEPS) if schedule.unit == "step" else [i // 2 for i in range(STEPS)]
    return schedule.lrs(config["lr"], units)


_RUNS: dict[str, dict] = {}


def _run(name, plant, case, config, clip, schedule) -> dict:
    """Train `name` for STEPS steps; numpy's and the unplanted controls' runs are shared by the
    traps that use the same configuration (a Keras worker takes seconds to start)."""
    key = json.dumps([name, plant, config, clip, schedule.to_dict() if schedule else None])
    if key not in _RUNS:
        _RUNS[key] = _train(name, plant, case, config, clip, schedule)
    return _RUNS[key]


def _runner(name, plant):
    """Keras runs in this process (the KerasRunner a worker would run, on Keras' default
    TensorFlow backend: the float32-hyperparameter trap needs it), saving a worker's start-up
    per configuration."""
    if name != "keras":
        return get_runner(name, plant=plant)
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"in-process Keras runs on {keras.backend.backend()}, not tensorflow")
    from reference.runners.keras_ref import KerasRunner

    return KerasRunner(plant)


def _train(name, plant, case, config, clip, schedule) -> dict:
    runner = _runner(name, plant)
    try:
        return record(runner, case, config, clip, schedule, _lrs(config, schedule))
    finally:
        runner.close()


@pytest.mark.parametrize("plant, name, config, clip, schedule, step", TRAPS,
                         ids=[t[0] for t in TRAPS])
def test_trap_leaves_lockstep_at_its_step(case, plant, name, config, clip, schedule, step):
    ref = _run("numpy", None, case, config, clip, schedule)
    control = _run(name, None, case, config, clip, schedule)
    assert first_divergence(control, ref) is None, "the unplanted framework must stay in step"
    found = first_divergence(_run(name, plant, case, config, clip, schedule), ref)
    assert found is not None, f"{plant} was not caught"
    assert found["step"] == step, found
    # the update diverged first: a parameter is named, not the next step's loss
    assert found["tensor"] != "loss" and found["tensor"] in case[2], found
    print(f"{plant}: leaves lockstep at step {found['step']}, first at {found['tensor']} "
          f"(gap {found['gap']:.1e})")
