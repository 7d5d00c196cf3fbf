"""`skylark export --to torch --out model.pt2`: a skylark model as a whole torch program
(torch.export, reference.exporters.torch_program) that runs with torch alone; every built-in
and zoo model is written, verified on the spot, and loaded back here on another batch size."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import needs

from reference import porting
from reference.exporters import torch_program
from reference.inputs import informative_state, make_batch
from reference.spec import describe
from skylark.cli import main
from skylark.models import build_model
from skylark.zoo import ZOO

# torch.export traces each model (its first call in a process warms up for ~15 s): all slow
pytestmark = [pytest.mark.torch, pytest.mark.slow]

# float64 logits against numpy's: the export's own bar (reference.budgets: 1e-10 relative), the
# same sums reordered; here checked again on a batch of 3 (the export verifies batches of 4)
REL = 1e-10
BUILT_IN = [("skylark", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("vgg-bn", (3, 32, 32))]
MODELS = [pytest.param(n, s, id=n) for n, s in BUILT_IN] + [
    pytest.param(n, (1, 28, 28), id=n) for n in ZOO]


def _model(name: str, shape, dtype="float64"):
    net = ZOO[name](shape, dtype=dtype) if name in ZOO else build_model(name, shape, dtype=dtype)
    net.load_state(informative_state(describe(net), net.state(), 0))  # BatchNorm not 1, 0, 0, 1
    return net.eval()


@pytest.mark.parametrize("name,shape", MODELS)
def test_every_model_exports_as_a_program_that_reproduces_numpy(name, shape, tmp_path):
    needs("torch")
    import torch

    net = _model(name, shape)
    path = tmp_path / f"{name}.pt2"
    rep = porting.export_weights(net, "torch", path, input_shape=shape)
    assert rep["program"] and rep["verification"]["ok"], rep["verification"]
    assert rep["verification"]["loader"] == "torch.export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    prog = torch.export.load(str(path)).module()
    assert set(prog.state_dict()) >= set(net.state())  # skylark's names
    for kind in ("random", "ties"):
        x, _, _ = make_batch(kind, 3, shape, 10, 1, "float64")
        with torch.no_grad():
            got = prog(torch.from_numpy(x)).numpy()
        ref = net.forward(x)
        assert np.abs(got - ref).max() <= REL * np.abs(ref).max(), (kind, name)


def test_the_program_runs_with_torch_alone(tmp_path):
    """A fresh interpreter with only torch imported (no skylark, no reference code) loads the
    file and reproduces the logits."""
    needs("torch")
    shape = (1, 28, 28)
    net = _model("skylark", shape)
    path = tmp_path / "m.pt2"
    porting.export_weights(net, "torch", path, input_shape=shape)
    x, _, _ = make_batch("random", 5, shape, 10, 2, "float64")
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, torch\n"
            f"m = torch.export.load({str(path)!r}).module()\n"
            f"y = m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy()\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
            "bad = [k for k in sys.modules if k.split('.')[0] in ('skylark', 'reference')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-I", "-c", code], check=True, cwd=tmp_path, timeout=300)
    ref = net.forward(x)
    assert np.abs(np.load(tmp_path / "y.npy") - ref).max() <= REL * np.abs(ref).max()


def test_a_program_that_does_not_verify_is_not_written(tmp_path, monkeypatch):
    """A conv kernel planted transposed in the program: the verification names it, and
    neither the file nor its temporary stays (an existing file is kept)."""
    needs("torch")
    import torch

    real = torch_program.torch_module

    def planted(p):
        m = real(p)
        with torch.no_grad():
            w = m.state_dict()["0.weight"]
            w.copy_(w.transpose(2, 3).contiguous())
        return m

    monkeypatch.setattr(torch_program, "torch_module", planted)
    out = tmp_path / "net.pt2"
    out.write_bytes(b"the previous export")
    net = _model("skylark", (1, 28, 28))
    with pytest.raises(porting.VerificationError, match=r"verification FAILED: loaded in "
                                                        r"torch\.export"):
        porting.export_weights(net, "torch", out, input_shape=(1, 28, 28), force=True)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt2"]


def test_the_command_writes_a_program_for_pt2_and_a_state_dict_otherwise(tmp_path, capsys):
    needs("torch")
    import torch

    net = _model("lenet5", (1, 28, 28))
    ck = tmp_path / "ck.npz"
    net.save(ck, metadata={})
    assert main(["export", str(ck), "--model", "lenet5", "--to", "torch", "--out",
                 str(tmp_path / "m.pt2")]) == 0
    out = capsys.readouterr().out
    assert "torch program (torch.export)" in out and "verified: loaded in torch.export" in out
    assert main(["export", str(ck), "--model", "lenet5", "--to", "torch", "--out",
                 str(tmp_path / "m.pt")]) == 0
    sd = torch.load(tmp_path / "m.pt", weights_only=True)
    assert isinstance(sd, dict) and set(sd) >= set(net.state())
