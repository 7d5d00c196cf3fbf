"""skylark fuzz's training, checkpoint and data oracles (reference.fuzz.train, .resume, .data):
they pass on the correct tree, and each flags a bug planted in what it watches, naming it."""

from __future__ import annotations

import copy
import struct
import types

import numpy as np
import pytest

import skylark.checkpoint
import skylark.data.idx
import skylark.optim.base
import skylark.optim.sgd
import skylark.train
from reference.commands import compare
from reference.fuzz import data as fuzz_data
from reference.fuzz.generate import generate
from reference.fuzz.oracle import Oracle
from reference.fuzz.plan import build_layers
from reference.fuzz.resume import checkpoint_failures
from reference.fuzz.train import (
    BAR,
    draw_train,
    lockstep_failures,
    planted_gap,
    schedule_failures,
)
from reference.runners.runner import NotExpressible
from skylark.data import read_idx, write_idx

SGD_DAMPED = {"name": "sgd", "lr": 0.2, "momentum": 0.9, "dampening": 0.3,
              "weight_decay": 0.0, "nesterov": False}
ADAM = {"name": "adam", "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
        "amsgrad": False}


def _plan(index: int = 1, **train) -> dict:
    """Case `index` of seed 0 with its training draw, `train` overriding it (4 steps)."""
    plan = generate(0, index)
    t = draw_train(0, 1) if plan.get("train") is None else plan["train"]
    plan["train"] = {**t, "steps": 4, "resume_at": 2, "clip": None,
                     "schedule": {"name": "constant"}, **train}
    return plan


@pytest.fixture(scope="module")
def torch_runner():
    pytest.importorskip("torch")
    with Oracle(["torch"], fd=False) as o:
        yield o.runners


def test_the_draw_is_keyed_apart_and_covers_the_optimizers():
    """Cases 1, 4, 7, ... get a training draw; the network drawn is the one drawn without it."""
    names, clips, schedules = set(), set(), set()
    for i in range(300):
        t = draw_train(0, i)
        assert (t is None) == (i % 3 != 1)
        if t:
            names.add(t["optimizer"]["name"])
            clips.add(None if t["clip"] is None else t["clip"]["per_tensor"])
            schedules.add((t["schedule"]["name"], t["schedule"].get("warmup", 0) > 0))
            assert 1 <= t["resume_at"] < t["steps"]
    assert names == {"sgd", "adam", "adamw", "rmsprop"} and clips == {None, True, False}
    assert {s for s, _ in schedules} == {"constant", "step", "cosine"}
    assert any(w for _, w in schedules)


@pytest.mark.parametrize("index", [1, 4, 7, 10, 13])
def test_the_lockstep_passes_on_the_correct_tree(torch_runner, index):
    plan = generate(0, index)
    failures, unable = lockstep_failures(plan, build_layers(plan), torch_runner)
    assert failures == [] and unable == {}


def test_an_optimizer_bug_fails_the_lockstep_at_its_first_step(torch_runner, monkeypatch):
    monkeypatch.setattr(skylark.optim.sgd.SGD, "_damped", lambda self, g: g)
    plan = _plan(optimizer=SGD_DAMPED)
    failures, _ = lockstep_failures(plan, build_layers(plan), torch_runner)
    assert [f["framework"] for f in failures] == ["torch"]
    # the first momentum buffer is undamped in torch: dampening shows from step 2
    assert failures[0]["signature"].startswith("torch FAIL train step 2: ")


def test_a_framework_that_cannot_train_it_is_inexpressible_not_passed():
    class Unable:
        name, supports_gradients = "fake", True

        def setup(self, *a, **k):
            pass

        def train_setup(self, **k):
            raise NotExpressible("fake: no such optimizer")

    plan = _plan()
    assert lockstep_failures(plan, build_layers(plan), {"fake": Unable()}) == \
        ([], {"fake": "fake: no such optimizer"})


def _records(rng, steps=3, loss=2.3):
    ref = {"losses": [loss * (1 + 0.1 * i) for i in range(steps)],
           "probes": [{"a.weight": 5.0 + i, "b.bias": -0.25 * i} for i in range(steps)]}
    rec = copy.deepcopy(ref)
    rec["losses"] = [v * (1 + 1e-14) for v in rec["losses"]]  # rounding, far under the bar
    return rec, ref


def test_planted_gaps_are_flagged_at_the_bar_and_not_under_it():
    for seed in range(20):
        rec, ref = _records(np.random.default_rng(seed))
        assert planted_gap(rec, ref, (), np.random.default_rng(seed)) == []


@pytest.mark.parametrize("bug", ["loose", "signed", "absolute"])
def test_a_lenient_lockstep_verdict_is_caught(monkeypatch, bug):
    if bug == "loose":
        monkeypatch.setattr(compare, "LOCKSTEP_ATOL64", 1e-3)
    elif bug == "signed":
        monkeypatch.setattr(compare, "lockstep_gap", lambda losses, ref: (
            np.asarray(losses, float) - np.asarray(ref, float)) / np.maximum(1.0, np.abs(ref)))
    else:
        monkeypatch.setattr(compare, "lockstep_gap", lambda losses, ref: np.abs(
            np.asarray(losses, float) - np.asarray(ref, float)))
    found = []
    for seed in range(20):  # random sign, step and tensor: 20 draws meet each bug
        rec, ref = _records(np.random.default_rng(seed), loss=3.0)
        found += planted_gap(rec, ref, (), np.random.default_rng(seed))
    assert found and all(f["signature"].startswith("numpy-lockstep FAIL: a planted gap")
                         for f in found)
    assert BAR == 1e-9  # compare's documented bar, stated apart from its constant


def test_checkpoints_pass_on_the_correct_tree(tmp_path):
    for index in (1, 4, 7):
        plan = _plan(index, optimizer=ADAM)
        assert checkpoint_failures(plan, build_layers(plan), str(tmp_path)) == []


def _checkpoint_signatures(plan, tmp_path):
    return [f["signature"] for f in checkpoint_failures(plan, build_layers(plan), str(tmp_path))]


def test_a_resumed_adam_that_restarts_its_step_count_is_caught(monkeypatch, tmp_path):
    load = skylark.optim.base.FlatOptimizer.load_state

    def forgetful(self, state):
        load(self, state)
        self.steps = 0

    monkeypatch.setattr(skylark.optim.base.FlatOptimizer, "load_state", forgetful)
    assert "numpy-checkpoint FAIL: a resumed run left the uninterrupted one" in \
        _checkpoint_signatures(_plan(optimizer=ADAM), tmp_path)


def test_a_load_that_lets_float32_overflow_is_caught(monkeypatch, tmp_path):
    monkeypatch.setattr(skylark.checkpoint, "check_entry", lambda name, a, p: None)
    assert "numpy-checkpoint FAIL: a float64 value that overflows float32 was loaded" in \
        _checkpoint_signatures(_plan(optimizer=ADAM), tmp_path)


def test_a_resume_that_ignores_a_changed_option_is_caught(monkeypatch, tmp_path):
    monkeypatch.setattr(skylark.train, "check_resume", lambda meta, config, path, allow: [])
    assert "numpy-checkpoint FAIL: a resume with a changed optimizer was accepted" in \
        _checkpoint_signatures(_plan(optimizer=ADAM), tmp_path)


def test_a_stale_flat_gradient_buffer_is_caught(monkeypatch, tmp_path):
    from skylark.graph import Graph

    monkeypatch.setattr(Graph, "flat_grads", lambda self: None if self._flat is None else (
        self._flat.buffer, self._flat.entries))
    assert "numpy-train FAIL: a gradient bound anew before the step was not used" in \
        _checkpoint_signatures(_plan(optimizer=SGD_DAMPED), tmp_path)


@pytest.mark.parametrize("dtype", list(fuzz_data.CODES))
@pytest.mark.parametrize("layout", fuzz_data.LAYOUTS)
def test_the_idx_writer_agrees_with_the_format_and_the_loader(tmp_path, dtype, layout):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 3, 4, 5))
    values = fuzz_data.representable(x, dtype)
    shape = fuzz_data._shape(layout, *x.shape)
    fuzz_data.write(str(tmp_path / "a.idx"), values, shape, dtype, False)
    want = np.array(values, dtype).reshape(shape)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), want)
    write_idx(tmp_path / "b.idx", want)  # skylark's own writer: the same bytes
    assert (tmp_path / "a.idx").read_bytes() == (tmp_path / "b.idx").read_bytes()
    head = (tmp_path / "a.idx").read_bytes()[:4 + 4 * len(shape)]
    assert head == bytes([0, 0, fuzz_data.CODES[dtype][0], len(shape)]) + \
        struct.pack(f">{len(shape)}I", *shape)
    if dtype not in ("float32", "float64"):  # the integer range is used end to end
        info = np.iinfo(dtype)
        assert min(values) == info.min and max(values) == info.max


def test_the_data_oracle_passes_and_catches_a_byte_order_bug(monkeypatch, tmp_path):
    plan = {**generate(0, 2), "idx": {"dtype": "int16", "layout": "nchw", "gzip": True}}
    assert fuzz_data.idx_failures(plan, str(tmp_path)) == []
    monkeypatch.setitem(skylark.data.idx._CODES, 0x0B, "<i2")
    (f,) = fuzz_data.idx_failures(plan, str(tmp_path))
    assert f["signature"] == "numpy-idx FAIL: int16 images read back"


def test_every_case_gets_an_idx_draw_of_every_dtype():
    drawn = {generate(0, i)["idx"]["dtype"] for i in range(60)}
    assert drawn == set(fuzz_data.CODES)


def test_a_schedule_bug_is_caught_against_torch_lr_scheduler(torch_runner, monkeypatch):
    """Every framework in the lockstep takes skylark's rates: torch's lr_scheduler is the
    independent statement of them (a warmup of 1 included: one step at the full rate)."""
    from skylark.optim import Schedule

    for warmup in (0, 1, 2):
        for name in ("constant", "step", "cosine"):
            sched = Schedule(name, total=4, warmup=warmup, step_size=1 if name == "step"
                             else None, gamma=0.5, min_lr=1e-4).to_dict()
            assert schedule_failures(_plan(schedule=sched)) == [], sched
    monkeypatch.setattr(Schedule, "lr", lambda self, base, t: base * t / max(1, self.warmup)
                        if t < self.warmup else base)
    plan = _plan(schedule=Schedule("constant", total=4, warmup=2).to_dict())
    (f,) = schedule_failures(plan)
    assert f["signature"] == "torch FAIL train schedule: step 1 learning rate"


def test_a_training_failure_repro_replays_the_lockstep():
    from reference.fuzz import repro

    plan = _plan()
    assert repro.command("r.json", plan, "torch", "torch FAIL train step 2: dense.weight") == \
        "skylark fuzz --replay r.json --frameworks torch"
    assert repro.command("r.json", plan, "torch", "torch FAIL loss: dense.weight gradient") \
        .startswith("skylark check --model r.json")


def test_an_inexpressible_training_makes_the_case_inexpressible_not_passed():
    class Unable:
        name, supports_gradients = "keras", True

        def setup(self, *a, **k):
            pass

        def train_setup(self, **k):
            raise NotExpressible("keras: RMSprop adds eps inside the root")

    stub = types.SimpleNamespace(runners={"keras": Unable()})
    verdict: dict = {}
    plan = _plan()
    assert Oracle._train(stub, plan, build_layers(plan), ["keras"], verdict) == []
    assert verdict["reason"] == "training: keras: RMSprop adds eps inside the root"


def test_the_numpy_oracles_run_where_the_references_cannot_mirror_the_model(tmp_path):
    """Case 40 of seed 0 has a softmax layer (no reference builds it): the checkpoint and
    data oracles need no reference, so they still run, and pass."""
    from reference.spec import describe, geometry
    from skylark.models import from_config

    plan = _plan(40, optimizer=ADAM)
    layers = build_layers(plan)
    with pytest.raises(ValueError, match="mirror only"):
        geometry(describe(from_config(layers, dtype="float64", seed=0)), plan["input_shape"])
    assert checkpoint_failures(plan, layers, str(tmp_path)) == []
    assert fuzz_data.idx_failures(plan, str(tmp_path)) == []


def test_the_shrinker_makes_the_training_run_plainer_only_while_it_still_fails():
    from reference.fuzz.shrink import proposals, shrink, size

    plan = _plan(clip={"max_norm": 0.1, "per_tensor": True},
                 schedule={"name": "cosine", "total": 4, "unit": "step", "warmup": 1,
                           "min_lr": 0.0})
    first, *rest = proposals(plan)
    assert "train" not in first and size(first) < size(plan)  # a failure of another oracle
    plainer = [p["train"] for p in rest if p["train"] != plan["train"]]
    assert {"clip": None}.items() <= plainer[0].items()
    assert plainer[1]["schedule"] == {"name": "constant"} and plainer[2]["steps"] == 3
    assert all(size(p) < size(plan) for p in rest if p["train"] != plan["train"])
    # a failure that needs the clipping keeps it; the rest of the run is made plain
    small, _ = shrink(plan, "x", lambda p: "train" in p and p["train"]["clip"] is not None)
    assert small["train"]["clip"] == plan["train"]["clip"]
    assert small["train"]["schedule"] == {"name": "constant"} and small["train"]["steps"] == 3
    assert small["train"]["optimizer"] == plan["train"]["optimizer"]
