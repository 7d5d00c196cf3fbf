"""The benchmark's floor model: the multiply-adds it charges a step, counted by hand."""

from __future__ import annotations

import skylark as sk
from benchmarks.floor import step_work
from skylark.models import lenet5


def test_skylark_net_multiply_adds_by_hand():
    # conv 3x3, 1 -> 8 channels on 28x28: 26*26*8*9 per pass, forward and weight gradient
    # (no input gradient for the data); dense 1352 -> 10: forward, weight and input gradient
    conv, dense = 26 * 26 * 8 * 9, 8 * 13 * 13 * 10
    work = step_work(sk.skylark_cnn(), (1, 28, 28))
    assert work["infer_macs"] == conv + dense
    assert work["train_macs"] == 2 * conv + 3 * dense


def test_lenet5_multiply_adds_by_hand():
    layers = [28 * 28 * 6 * 25, 10 * 10 * 16 * 6 * 25, 400 * 120, 120 * 84, 84 * 10]
    work = step_work(lenet5(), (1, 28, 28))
    assert work["infer_macs"] == sum(layers)
    # forward + weight gradients + input gradients of every layer but the first
    assert work["train_macs"] == 2 * sum(layers) + sum(layers[1:])


def test_skylark_net_traffic_by_hand():
    # float32 bytes; forward: conv reads 784, writes 5408; pool reads 5408, writes 1352; dense
    # reads 1352, writes 10 (flatten is a view). backward: dense reads 10 + 1352, writes 1352;
    # pool reads 1352 + 5408, writes 5408; conv reads 5408 + 784, writes nothing
    fwd = 784 + 5408 + 5408 + 1352 + 1352 + 10
    bwd = (10 + 1352 + 1352) + (1352 + 5408 + 5408) + (5408 + 784)
    work = step_work(sk.skylark_cnn(), (1, 28, 28))
    assert work["infer_bytes"] == 4 * fwd
    assert work["train_bytes"] == 4 * (fwd + bwd)
