"""`skylark import MODEL` (a whole model, no --from), `--list-unsupported`, and what the other
commands do with a model to import: the command-line contract, with skylark's own
`module:function` as the source (the framework sources have their own test files)."""

from __future__ import annotations

import numpy as np
import pytest

from reference.commands import import_cmd
from reference.importers.sources import open_source, resolve_model
from skylark.checkpoint import read_checkpoint
from skylark.models import build_model


def test_a_whole_model_is_written_with_its_architecture_and_trains_on(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert import_cmd.main(["skylark.zoo:resnet", "--input-shape", "1,8,8",
                            "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "verified against skylark's own logits" in said
    arrays, meta, _ = read_checkpoint(out)
    assert meta["input_shape"] == [1, 8, 8] and meta["imported_from"]["framework"] == "skylark"
    # `--model ckpt.npz` starts from the architecture and weights the checkpoint records
    net = build_model(str(out), (1, 8, 8), dtype="float32")
    assert set(net.state()) == set(arrays)
    assert all(np.array_equal(net.state()[k], arrays[k]) for k in arrays)


def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys):
    cases = [
        (["missing.onnx", "--out", str(tmp_path / "a.npz")], "no such file"),
        (["skylark.zoo:resnet"], "--out CKPT.npz is required"),
        (["skylark.zoo:resnet", "--model", "vgg-bn", "--out", str(tmp_path / "b.npz")],
         "a whole model brings its own. Received: --model vgg-bn"),
        (["no_such_module:f", "--out", str(tmp_path / "c.npz")], "cannot import the model"),
        (["skylark.zoo:resnet", "--out", str(tmp_path / "d.npz"), "--state-dict", "w.pt"],
         "--state-dict loads into a torch module. Received: a skylark model"),
    ]
    for argv, message in cases:
        assert import_cmd.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # nothing written


def test_list_unsupported_of_a_model_skylark_expresses_is_empty(capsys):
    assert import_cmd.main(["--list-unsupported", "skylark.zoo:resnet"]) == 0
    assert "nothing unsupported" in capsys.readouterr().err


def test_a_skylark_function_resolves_like_build_model():
    net, shape, imp = resolve_model("skylark.zoo:resnet", (1, 8, 8), dtype="float64")
    # not an import: build_model's path
    assert imp is None and shape == (1, 8, 8) and net.nodes[0].name == "conv1"
    assert open_source("skylark.zoo:resnet").kind == "skylark"


def test_a_model_to_import_is_refused_by_train_with_the_way_there(capsys):
    with pytest.raises(ValueError, match=r"skylark import net.onnx --out model.npz"):
        build_model("net.onnx", (1, 28, 28))
