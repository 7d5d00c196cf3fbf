"""The porting traps: each one planted into one framework's copy of a model, and `skylark check`
must fail and name the first diverging tensor the README's traps table promises.

A row: trap, plant (reference.runners.runner.PLANTS), framework, model, input, dtype, and the first
diverging tensor in forward order, in the loss pass and in the cotangent pass (None: clean).
"""

from __future__ import annotations

import pytest
from conftest import framework_param

import skylark as sk
from reference import harness
from reference.frameworks import FRAMEWORKS
from reference.runners.registry import get_runner
from reference.runners.runner import FrameworkUnavailable


def bn_net():
    """conv -> BatchNorm2d (torch's eps and momentum) -> ReLU -> flatten -> dense."""
    return sk.Sequential(sk.Conv2D(1, 3, 3, seed=1), sk.BatchNorm2d(3), sk.ReLU(), sk.Flatten(),
                         sk.Dense(3 * 6 * 6, 4, seed=2))


def leaky_net():
    return sk.Sequential(sk.Conv2D(1, 3, 3, seed=1), sk.LeakyReLU(0.01), sk.Flatten(),
                         sk.Dense(3 * 6 * 6, 4, seed=2))


def avgpool_net():
    """An average pool whose windows overlap the zero padding (count_include_pad=True)."""
    return sk.Sequential(sk.Conv2D(1, 2, 3, seed=1), sk.AvgPool2D(3, 2, padding=1),
                         sk.Flatten(), sk.Dense(2 * 3 * 3, 4, seed=2))


def same_net():
    """A stride-2 "same" conv on an even size: TF pads 0 on top and 1 at the bottom."""
    return sk.Sequential(sk.Conv2D(1, 2, 3, stride=2, padding="same", seed=1), sk.Flatten(),
                         sk.Dense(2 * 4 * 4, 4, seed=2))


def skylark_net():
    return sk.skylark_cnn((1, 8, 8))


def shuffle_net():
    """conv (4 channels) -> ShuffleNet's channel shuffle (2 groups) -> flatten -> dense."""
    return sk.Sequential(sk.Conv2D(1, 4, 3, seed=1), sk.ChannelShuffle(2), sk.Flatten(),
                         sk.Dense(4 * 6 * 6, 4, seed=2))


# --- graph traps: each model is the smallest graph around the joint the trap is about ---------


def _head(g: sk.Graph, c: int, hw: int) -> sk.Graph:
    g.add("flat", sk.Flatten())
    g.add("fc", sk.Dense(c * hw * hw, 4, seed=9))
    return g


def concat_net():
    """Two branches joined along the channels (2 + 3 of them)."""
    g = sk.Graph()
    g.add("a", sk.Conv2D(1, 2, 3, padding=1, seed=1), "input")
    g.add("b", sk.Conv2D(1, 3, 1, seed=2), "input")
    g.add("cat", sk.Concat(), ["a", "b"])
    return _head(g, 5, 8)


def residual_net():
    """relu(conv(x) + shortcut(x)): a residual added BEFORE the ReLU, as ResNet's block."""
    g = sk.Graph()
    g.add("conv", sk.Conv2D(1, 2, 3, padding=1, seed=1), "input")
    g.add("short", sk.Conv2D(1, 2, 1, seed=2), "input")
    g.add("add", sk.Add(), ["conv", "short"])
    g.add("relu", sk.ReLU())
    return _head(g, 2, 8)


def zeropad_net():
    """Pads whose W pair (1, 2) and H pair (2, 1) have equal sums: read in the other order the
    padded map has the same shape, only shifted, and no shape error gives the trap away."""
    return sk.Sequential(sk.Conv2D(1, 2, 3, seed=1), sk.ZeroPad2d((1, 2, 2, 1)), sk.Flatten(),
                         sk.Dense(2 * 9 * 9, 4, seed=2))


def rescaling_net():
    """A Keras Normalization as an importer writes it (1 / std, -mean / std: no float32 value)
    on the input."""
    return sk.Sequential(sk.Rescaling(1 / 0.3, -0.1 / 0.3), sk.Conv2D(1, 2, 3, seed=1),
                         sk.Flatten(), sk.Dense(2 * 6 * 6, 4, seed=2))


def relu6_net():
    """A conv whose outputs reach past 6 (weights x 60), then ReLU6: on small activations a
    ReLU and a ReLU6 agree, and the trap hides."""
    conv = sk.Conv2D(1, 2, 3, seed=1)
    conv.weight *= 60
    return sk.Sequential(conv, sk.ReLU6(), sk.Flatten(), sk.Dense(2 * 6 * 6, 4, seed=2))


def se_net():
    """A squeeze-excite gate on an 8x8 map of 8 channels: H == C, so a gate laid out
    (N, C, 1, 1) on NHWC broadcasts over the rows without an error."""
    g = sk.Graph()
    g.add("conv", sk.Conv2D(1, 8, 3, padding=1, seed=1), "input")
    g.add("pool", sk.AdaptiveAvgPool2d(1))
    g.add("fc1", sk.Conv2D(8, 8, 1, seed=2))
    g.add("gate", sk.Sigmoid())
    g.add("mul", sk.Multiply(), ["conv", "gate"])
    return _head(g, 8, 8)


def adaptive_net():
    """AdaptiveAvgPool2d(3) on a 5x5 map: torch's bins [0, 2), [1, 4), [3, 5) are not the
    windows of any fixed-stride pool."""
    return sk.Sequential(sk.Conv2D(1, 2, 4, seed=1), sk.AdaptiveAvgPool2d(3), sk.Flatten(),
                         sk.Dense(2 * 3 * 3, 4, seed=2))


TRAPS = [
    # BatchNorm: Keras moves the running variance with the biased variance. In training the
    # outputs use the batch's statistics, so only the running variance differs.
    ("bn_variance", "keras_bn_biased", "keras", bn_net, "random",
     ("stat.1.running_var", None, None)),
    # BatchNorm: Keras' momentum is the weight of the old value (torch 0.1 = Keras 0.9)
    ("bn_momentum", "keras_bn_momentum", "keras", bn_net, "random",
     ("stat.1.running_mean", None, None)),
    # BatchNorm: Keras' default epsilon is 1e-3, torch's 1e-5. The BN output is the first
    # wrong tensor; the loss pass starts at the (now different) logits; in the cotangent pass
    # d.out.4 is the cotangent itself and d.4.weight = cot^T out.3 is the first to see it.
    ("bn_eps", "keras_bn_eps", "keras", bn_net, "random",
     ("out.1", "loss/d.out.4", "cot/d.4.weight")),
    # LeakyReLU: Keras' default slope is 0.3, torch's 0.01 (same reasoning, one layer less)
    ("leaky_default", "keras_leaky_default", "keras", leaky_net, "random",
     ("out.1", "loss/d.out.3", "cot/d.3.weight")),
    # AvgPool at padded borders: torch divides by the whole window (count_include_pad=True)
    # by default, TF/Keras "same" by the real cells; the plant flips torch's divisor
    ("avg_divisor", "torch_avg_divisor", "torch", avgpool_net, "random",
     ("out.1", "loss/d.out.3", "cot/d.3.weight")),
    # strided "same" padding: TF puts the odd pixel bottom/right, torch's padding= is symmetric
    ("same_padding", "torch_same_symmetric", "torch", same_net, "random",
     ("out.0", "loss/d.out.2", "cot/d.2.weight")),
    # flatten order: a Dense after Flatten needs its rows permuted CHW -> HWC
    ("flatten_order", "dense_hwc", "tf", skylark_net, "random",
     ("out.3", "loss/d.out.3", "cot/d.out.2")),
    # max-pool ties: the first maximum wins (the last, here)
    ("pool_ties", "pool_last_max", "torch", skylark_net, "ties",
     (None, "loss/d.out.0", "cot/d.out.0")),
    # the loss: a mean over the batch, not a sum
    ("loss_mean", "loss_sum", "torch", skylark_net, "random", ("loss", "loss/d.out.3", None)),
    # conv kernels: OIHW <-> HWIO, kh and kw not swapped
    ("kernel_layout", "kernel_transposed", "keras", skylark_net, "random",
     ("out.0", "loss/d.out.3", "cot/d.3.weight")),
    # channel shuffle: torch's NCHW reshape-transpose-reshape run on Keras' NHWC memory mixes
    # pixels and channels; the shuffle's output is the first wrong tensor, and cot^T out.2 (the
    # dense's weight gradient) the first in the cotangent pass
    ("channel_shuffle_layout", "keras_shuffle_nchw", "keras", shuffle_net, "random",
     ("out.1", "loss/d.out.3", "cot/d.3.weight")),
    # --- graphs: the joint itself is the first wrong tensor; the loss pass starts at the
    # (now different) logits, and in the cotangent pass the head's weight gradient
    # (cot^T out.flat) is the first to see it ---
    # concat along the channels: axis 1 in NCHW, -1 in NHWC; done on NCHW memory and reshaped
    ("concat_axis", "keras_concat_nchw_memory", "keras", concat_net, "random",
     ("out.cat", "loss/d.out.fc", "cot/d.fc.weight")),
    # the residual added after the ReLU instead of before it
    ("residual_order", "torch_residual_after_relu", "torch", residual_net, "random",
     ("out.add", "loss/d.out.fc", "cot/d.fc.weight")),
    # ReLU6 (MobileNet) ported as ReLU: the same below 6
    ("relu6", "keras_relu6_as_relu", "keras", relu6_net, "random",
     ("out.1", "loss/d.out.3", "cot/d.3.weight")),
    # squeeze-excite: the (N, C, 1, 1) gate of NCHW put on an NHWC map
    ("se_gate_axis", "keras_se_gate_nchw", "keras", se_net, "random",
     ("out.mul", "loss/d.out.fc", "cot/d.fc.weight")),
    # AdaptiveAvgPool2d's bins (start floor(i*H/out), end ceil((i+1)*H/out)) vs a fixed pool
    ("adaptive_bins", "keras_adaptive_as_avgpool", "keras", adaptive_net, "random",
     ("out.1", "loss/d.out.3", "cot/d.3.weight")),
    # torch's ZeroPad2d pairs (W's first) given to Keras' ZeroPadding2D (H's first)
    ("zeropad_order", "keras_zeropad_torch_order", "keras", zeropad_net, "random",
     ("out.1", "loss/d.out.3", "cot/d.3.weight")),
    # Keras Rescaling given Python floats: on TensorFlow cast to float64 through float32
    ("rescaling_python_floats", "keras_rescaling_python_floats", "keras-tensorflow",
     rescaling_net, "random", ("out.0", "loss/d.out.3", "cot/d.3.weight")),
]


def _firsts(report, framework):
    r = report["frameworks"][framework]
    assert r["status"] == "FAIL", r
    return r["first_forward"], r["first_backward"]["loss"], r["first_backward"]["cot"]


@pytest.mark.parametrize("plant, framework, make, kind, first", [
    framework_param(fw, plant, fw, make, kind, first, id=trap)
    for trap, plant, fw, make, kind, first in TRAPS])
def test_planted_trap_fails_and_names_its_first_tensor(plant, framework, make, kind, first):
    model = make()
    shape = (1, 8, 8)
    clean = harness.run_check([framework], "float64", kind, model=model, input_shape=shape,
                              log=lambda m: None)
    assert clean["ok"], clean["frameworks"][framework]  # the model itself is fine
    planted = harness.run_check([framework], "float64", kind, model=model, input_shape=shape,
                                plants={framework: plant}, log=lambda m: None)
    assert _firsts(planted, framework) == first


@pytest.mark.keras
def test_running_statistics_not_copied_are_caught_in_eval_mode():
    """check replaces BatchNorm's initial state (1, 0, 0, 1) by a random one: with Keras' own
    initial running statistics left in place (0 and 1, the same as torch's), the eval-mode
    BatchNorm output is the first wrong tensor."""
    kw = {"model": bn_net(), "input_shape": (1, 8, 8), "training": False, "log": lambda m: None}
    assert harness.run_check(["keras"], "float64", "random", **kw)["ok"]
    kw["model"] = bn_net()
    planted = harness.run_check(["keras"], "float64", "random",
                                plants={"keras": "keras_bn_unloaded"}, **kw)
    assert _firsts(planted, "keras") == ("out.1", "loss/d.out.4", "cot/d.4.weight")


@pytest.mark.keras_torch
@pytest.mark.slow
def test_stock_keras_float64_on_torch_is_float32_at_the_first_dense(monkeypatch):
    """Keras 3 maps float64 to float32 in its promotion table on the torch and jax backends;
    with the reference's fix turned off, a float64 check fails at the first Dense output."""
    monkeypatch.setenv("SKYLARK_KERAS_STOCK_FLOAT64", "1")  # read by the fresh worker
    try:
        runner = get_runner("keras-torch")
    except FrameworkUnavailable as e:
        pytest.skip(e.reason)
    try:
        report = harness.run_check(["keras-torch"], "float64", "random", model=skylark_net(),
                                   input_shape=(1, 8, 8), runners={"keras-torch": runner},
                                   log=lambda m: None)
    finally:
        runner.close()
    assert _firsts(report, "keras-torch")[0] == "out.3"


def test_every_plant_is_a_row_or_tested_elsewhere():
    from test_optim_traps import TRAPS as OPTIMIZER_TRAPS  # the training traps' own table

    from reference.runners.runner import PLANTS

    assert {row[1] for row in TRAPS} | {"keras_bn_unloaded"} | {
        row[0] for row in OPTIMIZER_TRAPS} == set(PLANTS)
    assert all(fw in FRAMEWORKS for row in TRAPS for fw in [row[2]])
