"""Adam, AdamW, RMSprop and SGD's options, clipping and schedules against torch's own
(torch.optim, clip_grad_norm_, lr_scheduler), step by step, with random gradients and a
changing learning rate; their state through a checkpoint round trip; their argument errors."""

from __future__ import annotations

import numpy as np
import pytest

import skylark as sk
from skylark.optim import Schedule, build_optimizer, clip_grad_norm_, optimizer_config

torch = pytest.importorskip("torch")

# (optimizer, options): every option at a non-default value at least once
GRID = [
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.8, "dampening": 0.3}),
    ("sgd", {"weight_decay": 0.1}),
    ("adam", {}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-2}),
    ("adam", {"amsgrad": True}),
    ("adamw", {}),
    ("adamw", {"weight_decay": 0.1, "amsgrad": True}),
    ("rmsprop", {}),
    ("rmsprop", {"alpha": 0.9, "momentum": 0.9, "centered": True, "weight_decay": 1e-2}),
    ("rmsprop", {"centered": True, "eps": 1e-4}),
]
TORCH = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
STEPS = 12


def _model(dtype):
    return sk.Sequential(sk.Conv2D(2, 3, 3, seed=1, dtype=dtype), sk.Flatten(),
                         sk.Dense(3 * 4 * 4, 5, seed=2, dtype=dtype))


def _grads(model, steps, seed=0):
    """Random gradients per step, some entries exactly 0 (a dead unit's), one tensor shrinking
    over time (amsgrad's max then keeps an old value)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        step = {}
        for k, p in model.params().items():
            g = rng.standard_normal(p.shape) * (0.5 ** t if k.endswith("bias") else 1.0)
            g[rng.random(p.shape) < 0.1] = 0.0
            step[k] = g.astype(p.dtype)
        out.append(step)
    return out


def _lrs(base, steps):
    return Schedule("cosine", total=steps, warmup=3).lrs(base, range(steps))


def _skylark_run(name, options, dtype, grads, lrs, clip=None, resume_at=None):
    model = _model(dtype)
    config = optimizer_config(name, lrs[0], **options)
    opt = build_optimizer(model, config)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True)):
        if t == resume_at:  # a checkpoint: the state out and into a fresh optimizer
            state = {k: v.copy() for k, v in opt.state().items()}
            opt = build_optimizer(model, config)
            opt.load_state(state)
        opt.zero_grad()
        for k, v in model.grads().items():
            v[...] = g[k]
        if clip:
            clip_grad_norm_(model, **clip)
        opt.lr = lr
        opt.step()
    return {k: v.copy() for k, v in model.params().items()}


def _torch_run(name, options, dtype, grads, lrs, clip=None):
    model = _model(dtype)
    params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in model.params().items()}
    opt = getattr(torch.optim, TORCH[name])(list(params.values()), lr=lrs[0], **options)
    for g, lr in zip(grads, lrs, strict=True):
        for k, p in params.items():
            p.grad = torch.tensor(g[k])
        if clip and clip["per_tensor"]:
            for p in params.values():
                torch.nn.utils.clip_grad_norm_([p], clip["max_norm"])
        elif clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), clip["max_norm"])
        opt.param_groups[0]["lr"] = lr
        opt.step()
    return {k: p.detach().numpy() for k, p in params.items()}


@pytest.mark.parametrize("name, options", GRID, ids=lambda v: str(v).replace(" ", ""))
def test_float64_steps_match_torch(name, options):
    """Same formulas in float64: agreement to rounding (rtol 1e-12: 12 steps of a handful of
    roundings each, ~1e-15 apiece; a convention difference shows at 1e-3 or more)."""
    model = _model("float64")
    grads = _grads(model, STEPS)
    lrs = _lrs(0.05, STEPS)
    ours = _skylark_run(name, options, "float64", grads, lrs)
    theirs = _torch_run(name, options, "float64", grads, lrs)
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("name, options", GRID[::3], ids=lambda v: str(v).replace(" ", ""))
def test_float32_steps_match_torch(name, options):
    """float32: same arithmetic up to the order of a few operations; 12 steps of updates of size
    lr ~ 0.05 on weights of size ~1, each rounded at 6e-8: 1e-5 absolute bounds it with room."""
    model = _model("float32")
    grads = _grads(model, STEPS)
    lrs = _lrs(0.05, STEPS)
    ours = _skylark_run(name, options, "float32", grads, lrs)
    theirs = _torch_run(name, options, "float32", grads, lrs)
    for k in ours:
        assert ours[k].dtype == np.float32
        np.testing.assert_allclose(ours[k], theirs[k], rtol=0, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("per_tensor", [False, True])
@pytest.mark.parametrize("name", ["sgd", "adam"])  # Adam is nearly blind to a gradient's scale
def test_clipping_matches_torch_clip_grad_norm(per_tensor, name):
    model = _model("float64")
    grads = [{k: 10 * v for k, v in g.items()} for g in _grads(model, STEPS)]
    lrs = _lrs(0.05, STEPS)
    clip = {"max_norm": 1.0, "per_tensor": per_tensor}
    ours = _skylark_run(name, {}, "float64", grads, lrs, clip)
    theirs = _torch_run(name, {}, "float64", grads, lrs, clip)
    unclipped = _skylark_run(name, {}, "float64", grads, lrs)
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-12, atol=1e-14, err_msg=k)
    assert any(not np.allclose(ours[k], unclipped[k]) for k in ours)  # it clipped


def test_clip_returns_the_norm_and_keeps_small_gradients():
    model = _model("float64")
    opt = build_optimizer(model, optimizer_config("sgd", 0.1))
    opt.zero_grad()
    for v in model.grads().values():
        v[...] = 0.01
    before = {k: v.copy() for k, v in model.grads().items()}
    norm = clip_grad_norm_(model, 5.0)
    assert norm == pytest.approx(0.01 * np.sqrt(sum(v.size for v in before.values())))
    for k, v in model.grads().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("name, options", GRID, ids=lambda v: str(v).replace(" ", ""))
def test_state_round_trip_resumes_bit_identically(name, options):
    model = _model("float64")
    grads, lrs = _grads(model, STEPS), _lrs(0.05, STEPS)
    straight = _skylark_run(name, options, "float64", grads, lrs)
    resumed = _skylark_run(name, options, "float64", grads, lrs, resume_at=5)
    for k in straight:
        np.testing.assert_array_equal(straight[k], resumed[k], err_msg=k)


def _torch_lrs(schedule: Schedule, base: float) -> list[float]:
    """The rates torch's own lr_scheduler classes give, stepped once per unit."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    S = torch.optim.lr_scheduler
    main = {"constant": lambda: S.ConstantLR(opt, factor=1.0, total_iters=0),
            "step": lambda: S.StepLR(opt, schedule.step_size, schedule.gamma),
            "cosine": lambda: S.CosineAnnealingLR(opt, schedule.total - schedule.warmup,
                                                  schedule.min_lr)}[schedule.name]
    if schedule.warmup > 1:
        warm = S.LinearLR(opt, start_factor=1 / schedule.warmup, end_factor=1.0,
                          total_iters=schedule.warmup - 1)
        sched = S.SequentialLR(opt, [warm, main()], milestones=[schedule.warmup])
    else:
        sched = main()
    out = []
    for _ in range(schedule.total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("schedule", [
    Schedule("constant", total=10, warmup=4),
    Schedule("step", total=20, step_size=6, gamma=0.5),
    Schedule("step", total=20, warmup=5, step_size=4, gamma=0.3),
    Schedule("cosine", total=30),
    Schedule("cosine", total=30, warmup=6, min_lr=1e-3),
], ids=lambda s: f"{s.name}-w{s.warmup}")
def test_schedules_match_torch_lr_scheduler(schedule):
    ours = schedule.lrs(0.1, range(schedule.total))
    np.testing.assert_allclose(ours, _torch_lrs(schedule, 0.1), rtol=1e-13, atol=1e-16)
    if schedule.warmup:
        assert ours[0] == pytest.approx(0.1 / schedule.warmup)  # never a step at lr 0


@pytest.mark.parametrize("make, match", [
    (lambda: optimizer_config("adagrad"), "Received: optimizer='adagrad'"),
    (lambda: optimizer_config("adam", betas=(0.9, 1.0)), r"Received: betas=\(0.9, 1.0\)"),
    (lambda: optimizer_config("adam", betas=(-0.1, 0.9)), r"Received: betas=\(-0.1, 0.9\)"),
    (lambda: optimizer_config("adam", betas=0.9), "Received: betas=0.9"),
    (lambda: optimizer_config("adam", eps=0.0), "Received: eps=0.0"),
    (lambda: optimizer_config("rmsprop", eps=-1e-8), "Received: eps=-1e-08"),
    (lambda: optimizer_config("rmsprop", alpha=1.0), "Received: alpha=1.0"),
    (lambda: optimizer_config("sgd", betas=(0.9, 0.99)), "it applies to adam, adamw"),
    (lambda: optimizer_config("adam", momentum=0.9), "it applies to rmsprop, sgd"),
    (lambda: optimizer_config("sgd", nesterov=True), "nesterov needs momentum > 0"),
    (lambda: optimizer_config("sgd", weight_decay=-1.0), "Received: weight_decay=-1.0"),
    (lambda: optimizer_config("adam", lr=float("nan")), "Received: lr=nan"),
    (lambda: Schedule("linear"), "Received: schedule='linear'"),
    (lambda: Schedule("cosine", total=5, warmup=5), "Received: warmup=5"),
    (lambda: Schedule("step", total=5), "Received: step_size=None"),
    (lambda: Schedule("cosine", total=5, unit="batch"), "Received: unit='batch'"),
    (lambda: sk.optim.clip_config(0.0), "Received: clip_norm=0.0"),
    (lambda: sk.optim.clip_config(-1.0), "Received: clip_norm=-1.0"),
])
def test_bad_options_are_one_line_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_config_is_json_and_rebuilds():
    import json

    config = optimizer_config("adam", 3e-4, betas=(0.8, 0.9), amsgrad=True)
    assert json.loads(json.dumps(config)) == config
    assert config == {"name": "adam", "lr": 3e-4, "betas": [0.8, 0.9], "eps": 1e-8,
                      "weight_decay": 0.0, "amsgrad": True}
    assert optimizer_config("adamw")["weight_decay"] == 1e-2  # torch's AdamW default
