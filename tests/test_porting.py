"""Porting weights: numpy -> torch / Keras / TF / ONNX file -> numpy is bit-exact for every layer
kind and built-in model; every export is loaded back and checked in its own framework; the
`skylark export` and `skylark import` commands, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs

import skylark as sk
from reference import formats, porting, transfer
from reference.inputs import informative_state
from reference.spec import describe
from skylark.cli import main
from skylark.models import build_model, from_config, to_config

EXAMPLE = Path(__file__).parent.parent / "docs" / "example_model.json"
SUFFIX = {"torch": ".pt", "keras": ".weights.h5", "tf": "_savedmodel", "onnx": ".onnx"}
NEEDS = {"torch": "torch", "keras": "keras", "tf": "tf", "onnx": "onnxruntime"}
TARGETS = [pytest.param(t, marks=getattr(pytest.mark, NEEDS[t]), id=t) for t in porting.TARGETS]


def _informative(net: sk.Sequential) -> sk.Sequential:
    """`net` with a state no default hides (BatchNorm's 1, 0, 0, 1 replaced by random values)."""
    net.load_state(informative_state(describe(net), net.state(), 0))
    return net


def _per_kind_nets():
    """The smallest net around each layer kind (as tests/equivalence.py builds them), with the
    options whose conversion differs: conv dilation, groups, strided "same"; pool ceil_mode,
    dilation, count_include_pad."""
    from equivalence import minimal_net

    layers = {
        "conv_groups_same": (sk.Conv2D(4, 6, (2, 3), stride=(2, 1), padding="same", groups=2,
                                       seed=1), (4, 9, 8)),
        "conv_dilated_strided": (sk.Conv2D(3, 6, 3, stride=2, padding=1, dilation=2, groups=3,
                                           seed=2), (3, 11, 10)),
        "maxpool_ceil": (sk.MaxPool2D(3, 2, padding=1, ceil_mode=True), (2, 8, 7)),
        "maxpool_dilated": (sk.MaxPool2D(2, 1, dilation=2), (2, 7, 6)),
        "avgpool_pad": (sk.AvgPool2D(3, 2, padding=1, count_include_pad=False), (2, 7, 8)),
        "avgpool_same": (sk.AvgPool2D(3, 2, padding="same"), (2, 8, 7)),
        "globalavgpool": (sk.GlobalAvgPool2D(), (3, 5, 4)),
        "batchnorm": (sk.BatchNorm2d(3), (3, 5, 4)),
        "relu": (sk.ReLU(), (2, 4, 3)),
        "leaky_relu": (sk.LeakyReLU(0.1), (2, 4, 3)),
        "sigmoid": (sk.Sigmoid(), (2, 4, 3)),
        "tanh": (sk.Tanh(), (2, 4, 3)),
        "dropout": (sk.Dropout(0.3), (2, 4, 3)),
        "dense": (sk.Sequential(sk.Flatten(), sk.Dense(24, 7, seed=3)), (2, 4, 3)),
        "hard": (sk.Sequential(sk.ReLU6(), sk.Hardswish(), sk.Hardsigmoid()), (2, 4, 3)),
        "gated": (sk.Sequential(sk.SiLU(), sk.GELU(), sk.GELU("tanh")), (2, 4, 3)),
        "adaptive_shuffle": (sk.Sequential(sk.Conv2D(2, 4, 3, seed=4), sk.ChannelShuffle(2),
                                           sk.AdaptiveAvgPool2d((2, 3)), sk.Identity()),
                             (2, 7, 6)),
        "zeropad": (sk.Sequential(sk.Conv2D(2, 3, 3, seed=5), sk.ZeroPad2d((1, 2, 0, 3))),
                    (2, 6, 5)),
        "stochastic_depth": (sk.Sequential(sk.Conv2D(2, 3, 3, seed=6), sk.StochasticDepth(0.2)),
                             (2, 6, 5)),
        "rescaling": (sk.Sequential(sk.Rescaling([0.5, 2.0], [0.1, -0.2]),
                                    sk.Conv2D(2, 3, 3, seed=7)), (2, 6, 5)),
    }
    return {k: (_informative(minimal_net(layer, shape)), shape)
            for k, (layer, shape) in layers.items()}


def _models(dtype="float32"):
    nets = {name: (_informative(build_model(name, (1, 28, 28), dtype=dtype)), (1, 28, 28))
            for name in ("skylark", "lenet5", "vgg-bn")}
    layers = json.loads(EXAMPLE.read_text())["layers"]
    nets["example_model"] = (_informative(from_config(layers, dtype=dtype)), (1, 28, 28))
    return nets


def _round_trip(tmp_path, target, net, shape, name) -> None:
    """Export `net` (verified), read the file back: every tensor bit-exact, dtype kept."""
    needs(NEEDS[target])
    path = tmp_path / f"{name}{SUFFIX[target]}"
    rep = porting.export_weights(net, target, path, input_shape=shape)
    assert rep["verification"]["ok"], (target, name, rep["verification"])
    back = porting.load_from(path, target, net, input_shape=shape, dtype=rep["portable"].dtype)
    want = net.state()
    assert list(back.state()) == list(want)
    for k, v in back.state().items():
        assert v.dtype == want[k].dtype and np.array_equal(v, want[k]), (target, name, k)


@pytest.mark.parametrize("target", TARGETS)
def test_round_trip_of_the_skylark_net_is_bit_exact_and_verified(target, tmp_path):
    net = _informative(sk.skylark_cnn((1, 8, 8), seed=3))
    _round_trip(tmp_path, target, net, (1, 8, 8), "skylark")


@pytest.mark.slow  # ~10-60 s per target (Keras builds and TF traces a model per net)
@pytest.mark.parametrize("target", TARGETS)
def test_round_trip_every_kind_and_model_is_bit_exact(target, tmp_path):
    """Every layer kind (its minimal net) and every built-in model plus docs/example_model.json,
    float32, and the models in float64: numpy -> file -> numpy bit-exact; each file verified
    in its framework on a random and a ties batch."""
    nets = {**_per_kind_nets(), **_models("float32"),
            **{f"{k}_f64": v for k, v in _models("float64").items()}}
    for name, (net, shape) in nets.items():
        _round_trip(tmp_path, target, net, shape, name)


@pytest.mark.slow  # the zoo: six graphs a target
@pytest.mark.parametrize("target", TARGETS)
def test_round_trip_of_the_graph_zoo_is_bit_exact(target, tmp_path):
    """Each zoo model (skylark.zoo), float32 on 32x32 RGB: numpy -> file -> numpy bit-exact,
    every node's state under its torchvision-style name; each file verified in its framework
    (random and ties batches)."""
    for name in ("resnet", "mobilenet-v2", "densenet", "shufflenet", "inception",
                 "efficientnet"):
        net = _informative(build_model(name, (3, 32, 32)))
        _round_trip(tmp_path, target, net, (3, 32, 32), name)


@pytest.mark.torch
def test_an_export_that_does_not_verify_is_not_written(tmp_path, monkeypatch):
    """A conv kernel planted transposed in the torch file: the verification catches it, and
    neither the file nor its temporary stays (an existing file is kept as it was)."""
    needs("torch")
    real = transfer.to_torch
    monkeypatch.setattr(formats, "to_torch",
                        lambda s, spec: real(s, spec, plant="kernel_transposed"))
    out = tmp_path / "net.pt"
    out.write_bytes(b"the previous export")
    with pytest.raises(porting.VerificationError, match="verification FAILED"):
        porting.export_weights(sk.skylark_cnn((1, 8, 8)), "torch", out, input_shape=(1, 8, 8),
                               force=True)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt"]


@pytest.mark.onnxruntime
def test_onnx_float64_export_runs_in_onnxruntime(tmp_path):
    """onnxruntime has no float64 Conv/AveragePool kernels: a float64 export uses the ops it
    has, so the file loads and verifies within the float64 bar."""
    needs("onnxruntime")
    import onnx

    net = _informative(build_model("lenet5", (1, 28, 28), dtype="float64"))
    rep = porting.export_weights(net, "onnx", tmp_path / "l.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "l.onnx")).graph.node}
    assert not ops & {"Conv", "AveragePool"} and "Einsum" in ops
    assert all(r["max_abs"] <= 1e-10 * 10 for r in rep["verification"]["rows"])


# --- the commands -----------------------------------------------------------------------------


def _checkpoint(tmp_path, net, meta=None) -> Path:
    path = tmp_path / "ck.npz"
    net.save(path, metadata=meta or {})
    return path


@pytest.mark.torch
@pytest.mark.onnxruntime
def test_export_reads_the_architecture_from_the_checkpoint_and_import_writes_it(tmp_path,
                                                                              capsys):
    """A checkpoint recording its model (metadata "model") exports without --model; importing
    the file back writes the same architecture, and the round trip is bit-exact."""
    needs("torch")
    needs("onnxruntime")
    layers = json.loads(EXAMPLE.read_text())["layers"]
    net = _informative(from_config(layers))
    ck = _checkpoint(tmp_path, net, {"model": to_config(net)})
    assert main(["export", str(ck), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "verified: loaded in onnxruntime" in out and out.count("\n") == 2
    assert main(["import", str(tmp_path / "m.onnx"), "--from", "onnx", "--model",
                 str(EXAMPLE), "--out", str(tmp_path / "back.npz")]) == 0
    back = from_config(layers)
    meta = back.load(tmp_path / "back.npz")
    assert meta["model"] == to_config(net) and meta["input_shape"] == [1, 28, 28]
    for k, v in net.state().items():
        assert np.array_equal(back.state()[k], v), k
    # the imported checkpoint records its model: it exports again with no --model
    assert main(["export", str(tmp_path / "back.npz"), "--to", "torch", "--out",
                 str(tmp_path / "m.pt"), "--no-verify"]) == 0


def _error(capsys, argv) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.torch
def test_export_errors_are_one_line_naming_the_value(tmp_path, capsys):
    needs("torch")
    ck = _checkpoint(tmp_path, sk.skylark_cnn((1, 8, 8)), {"dataset": "digits"})
    (tmp_path / "taken.pt").write_bytes(b"keep me")
    cases = [
        (["--to", "caffe", "--out", "x.pt"], "--to must be one of torch, keras, tf, onnx. "
                                             "Received: --to='caffe'"),
        (["--to", "torch", "--out", str(tmp_path / "taken.pt")], "taken.pt' exists: pass --force"),
        (["--to", "torch", "--out", str(tmp_path / "no" / "x.pt")], "does not exist"),
        (["--to", "keras", "--out", str(tmp_path / "x.h5")], "must end in .weights.h5"),
    ]
    for argv, message in cases:
        assert message in _error(capsys, ["export", str(ck), *argv])
    assert (tmp_path / "taken.pt").read_bytes() == b"keep me"
    missing = _error(capsys, ["export", str(tmp_path / "nope.npz"), "--to", "torch", "--out",
                              str(tmp_path / "y.pt")])
    assert "nope.npz" in missing


@pytest.mark.torch
def test_import_names_what_does_not_fit(tmp_path, capsys):
    """A state_dict for another model: every missing, unexpected and mis-shaped entry named."""
    needs("torch")
    import torch

    sd = {k: torch.tensor(v) for k, v in sk.skylark_cnn((1, 8, 8)).state().items()}
    torch.save(sd, tmp_path / "digits.pt")
    err = _error(capsys, ["import", str(tmp_path / "digits.pt"), "--from", "torch", "--model",
                          "skylark", "--out", str(tmp_path / "a.npz")])
    assert "'3.weight' has the wrong shape: expected (10, 1352), received (10, 72)" in err
    torch.save({**sd, "9.weight": torch.zeros(2)}, tmp_path / "extra.pt")
    del sd["3.bias"]
    torch.save(sd, tmp_path / "short.pt")
    err = _error(capsys, ["import", str(tmp_path / "short.pt"), "--from", "torch",
                          "--input-shape", "1,8,8", "--out", str(tmp_path / "a.npz")])
    assert "Missing: 3.bias (expected shape (10,))" in err
    err = _error(capsys, ["import", str(tmp_path / "extra.pt"), "--from", "torch",
                          "--input-shape", "1,8,8", "--out", str(tmp_path / "a.npz")])
    assert "unexpected: ['9.weight']" in err
    err = _error(capsys, ["import", str(tmp_path / "gone.pt"), "--from", "torch", "--out",
                          str(tmp_path / "a.npz")])
    assert "Received: " in err and "gone.pt" in err
    assert not (tmp_path / "a.npz").exists()


def test_an_unknown_framework_is_named_by_its_flag(tmp_path, capsys):
    """The command line names `--to` / `--from` as typed, not the functions' to= / framework=;
    nothing is written."""
    ck = _checkpoint(tmp_path, sk.skylark_cnn((1, 8, 8)), {"dataset": "digits"})
    err = _error(capsys, ["export", str(ck), "--to", "onnx2", "--out", str(tmp_path / "x.onnx")])
    assert "--to must be one of torch, keras, tf, onnx. Received: --to='onnx2'" in err
    err = _error(capsys, ["import", str(ck), "--from", "caffe", "--out", str(tmp_path / "y.npz")])
    assert "--from must be one of torch, keras, tf, onnx. Received: --from='caffe'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [ck.name]
