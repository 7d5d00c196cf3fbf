"""reference.importers.torch_source: a torch nn.Module imported into a skylark graph, proven by
running both on the same batches.

Every proof (`_prove`) runs the torch module and the imported skylark graph in float64 on a
random and a tie-heavy batch and compares the logits, the input's gradient and a few
parameters' gradients under a random cotangent. The bar is 1e-10 relative to the largest
reference value. Why: both compute the same sums in float64 (unit roundoff 1.1e-16), only in
another order; a reordered sum of n terms differs by at most ~n u sum|terms|, with n the
fan-in (<= a few thousand here), and the difference grows by the layers' gain through a few
dozen layers: measured 1e-15 .. 3e-15 on every torchvision model below. Anything an importer
gets wrong (a pad on the wrong side, a swapped gate, an eps, a skipped op, a tie routed to
another maximum) moves the outputs by far more than 1e-6.

Tie-heavy batches: the module's parameters are first rounded to a few significant bits
(reference.inputs.dyadic_params) so that a conv over the constant background is exact in any
summation order, and tied pool windows tie in both frameworks bit for bit; the tie rule itself
(the first maximum) is then what the pool gradients compare.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference.importers import ImportFileError, UnsupportedError
from reference.importers.torch_source import import_torch, list_unsupported
from reference.inputs import dyadic_params, make_batch
from reference.kinds import KINDS

REL = 1e-10  # float64, reordered sums through a few dozen layers (the module docstring)
# torch's Hardsigmoid backward multiplies by a FLOAT32 1/6 even in float64 (docs/design.md,
# the mobile nets' layers): each one on a path scales the gradient by 1 + 2.98e-8 (2**-25),
# skylark's by exactly 1/6. k of them on a path: k 2**-25 relative to that path; paths of
# either sign may cancel in the sum, a factor 4 allowed for that (measured below 2 on
# mobilenet_v3_small, 9 gates). An import bug moves a gradient by far more than 1e-6.
HARDSIGMOID_GRAD = 4 * 2.0 ** -25


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """float64, and BatchNorm statistics and affine parameters that are not the identity (a
    fresh BatchNorm's eval forward is x / sqrt(1 + eps): an eps bug would hide)."""
    g = torch.Generator().manual_seed(seed)
    module.double()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64)
                                     * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64)
                                    + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64) * 0.1)
    return module


def _dyadic(module: nn.Module) -> None:
    with torch.no_grad():
        params = dict(module.named_parameters())
        for k, v in dyadic_params({k: p.numpy() for k, p in params.items()}).items():
            params[k].copy_(torch.from_numpy(np.asarray(v)))


def _close(what: str, got, ref, rel: float = REL) -> None:
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    scale = float(np.abs(ref).max())
    assert scale > 0, f"{what}: the reference is all zero, matching it proves nothing"
    err = float(np.abs(got - ref).max())
    assert err <= rel * scale, f"{what}: max|a-b| {err:.3e} > {rel:.2e} * {scale:.3e}"


def _prove(module: nn.Module, input_shape, *, training=False, grads=True, batch=2,
           inputs=("random", "ties"), params=3):
    """Import `module` and compare it with its skylark graph (module docstring); returns the
    Imported."""
    module = _randomize(module)
    imp = None
    for kind in inputs:
        if kind == "ties":
            _dyadic(module)
        imp = import_torch(module, input_shape=input_shape)
        net = imp.graph("float64")
        grad_rel = REL + HARDSIGMOID_GRAD * sum(s["kind"] == "hardsigmoid" for s in imp.spec)
        module.train(training)
        net.train(training)
        x, _, _ = make_batch(kind, batch, input_shape, 10, 0, "float64")
        xt = torch.from_numpy(x.copy()).requires_grad_(grads)
        ref = module(xt)
        got = net.forward(x)
        _close(f"{kind} logits", got, ref.detach().numpy())
        if not grads:
            continue
        cot = np.random.default_rng(1).standard_normal(ref.shape)
        module.zero_grad()
        ref.backward(torch.from_numpy(cot))
        net.zero_grad()
        dx = net.backward(cot)
        _close(f"{kind} d input", dx, xt.grad.numpy(), grad_rel)
        mine = net.grads()
        named = [(k, p) for k, p in module.named_parameters() if p.grad is not None]
        picks = {named[0], named[-1], named[len(named) // 2]} if params else set()
        node = {path: name for name, path in imp.origin.items()}  # regnet's "block1-0" renamed
        for k, p in sorted(picks):
            path, leaf = k.rsplit(".", 1)
            _close(f"{kind} d {k}", mine[f"{node[path]}.{leaf}"], p.grad.numpy(), grad_rel)
    return imp


# --- hand-written modules: every mapping ---------------------------------------------------------


class Funky(nn.Module):
    """Functions and methods, not modules: what authors write in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=(1, 2), bias=False)
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2)
        self.fc = nn.Linear(8 * 3 * 4 + 8, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)), inplace=True)            # (8, 8, 10)
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)                  # (8, 4, 5)
        y = F.hardswish(self.dw(x))
        s = torch.sigmoid(self.se2(F.silu(self.se1(F.adaptive_avg_pool2d(y, 1)))))
        y = s * y                                                  # the gate first
        y += x
        a, b = y.chunk(2, dim=1)
        y = torch.cat([F.gelu(a, approximate="tanh"), F.leaky_relu(b, 0.2)], 1)
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        y = self.grouped(y)[:, 2:6]
        y = torch.add(y, F.relu6(y[:, 0:4]))
        z = torch.tanh(F.avg_pool2d(torch.cat((y, y), dim=1), 2, 1))   # (8, 3, 4)
        flat = z.view(z.size(0), -1)
        return self.fc(torch.cat([flat, z.mean([2, 3])], dim=1))


class Modules(nn.Module):
    """Modules only, in a Sequential, with a shared activation module called twice."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, stride=2, padding=2), nn.BatchNorm2d(6), nn.ReLU6(),
            nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(6, 8, 3, padding="same"),
            nn.Hardsigmoid(), nn.AvgPool2d(3, 1, 1, count_include_pad=False),
            nn.ChannelShuffle(2), nn.Identity(), nn.SiLU(), nn.GELU(), nn.LeakyReLU(0.1),
            nn.Tanh(), nn.Sigmoid(), nn.Hardswish(), nn.AdaptiveAvgPool2d((2, 3)))
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(p), nn.Linear(48, 16), nn.ReLU(),
                                  nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.act(self.act(self.features(x))))


def test_functions_methods_and_patterns_eval_and_train():
    imp = _prove(Funky(), (3, 8, 8))
    kinds = [s["kind"] for s in imp.spec]
    for kind in ("channelshuffle", "channelslice", "multiply", "globalavgpool2d", "flatten",
                 "concat", "add", "gelu", "leaky_relu", "relu6", "avgpool2d", "maxpool2d"):
        assert kind in kinds, kind
    gate = next(s for s in imp.spec if s["kind"] == "multiply")
    assert gate["inputs"][1].endswith("sigmoid"), gate  # skylark's multiply: [x, gate]
    _prove(Funky(), (3, 8, 8), training=True)


def test_modules_eval_and_train():
    _prove(Modules(), (1, 16, 16))
    _prove(Modules(), (1, 16, 16), training=True)  # dropout p=0: the masks cannot differ


def test_names_are_the_state_dict_keys():
    net = Modules()
    imp = import_torch(net, input_shape=(1, 16, 16))
    assert set(imp.state) == {k for k in net.state_dict() if "num_batches_tracked" not in k}
    names = [s["name"] for s in imp.spec]
    assert names[:3] == ["features.0", "features.1", "features.2"]
    assert "act" in names and "act_1" in names  # one module, called twice
    assert imp.origin["act_1"] == "act"
    for k, v in net.state_dict().items():
        if k in imp.state:
            np.testing.assert_array_equal(imp.state[k], v.numpy())
    funky = import_torch(Funky(), input_shape=(3, 8, 8))
    assert any(s["name"] == "add" for s in funky.spec)  # functions: "{scope}.{op}" or "{op}"


def test_dropout_module_in_train_mode_is_dropout():
    imp = import_torch(Modules(p=0.3), input_shape=(1, 16, 16))
    assert {"kind": "dropout", "p": 0.3} in [{k: s[k] for k in ("kind", "p")}
                                             for s in imp.spec if s["kind"] == "dropout"]


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(4, momentum=None)
        self.up = nn.Upsample(scale_factor=2)
        self.fc = nn.Linear(4 * 12 * 8, 10)

    def forward(self, x):
        x = self.up(self.bn(self.conv(x))) * 0.5
        a, b = x.chunk(2, dim=2)  # on H: refused, and its parts are not blamed again
        x = torch.cat([a + b, x], dim=2)
        return F.softmax(self.fc(torch.flatten(x, 1)), dim=1)


def test_every_unsupported_item_is_listed_with_its_node():
    items = list_unsupported(Unsupported(), (3, 4, 4))
    assert items == [
        "attribute padding_mode='reflect' of Conv2d at node 'conv'",
        "attribute momentum=None of BatchNorm2d at node 'bn'",
        "module=Upsample at node 'up'",
        "op=mul with a constant operand 0.5 at node 'mul'",
        "op=chunk on dim=2 (only the channels, dim=1) at node 'chunk'",
        "op=cat on dim=2 (only the channels, dim=1) at node 'cat'",
        "op=softmax at node 'softmax'",
    ], items
    with pytest.raises(UnsupportedError) as e:
        import_torch(Unsupported(), input_shape=(3, 4, 4))
    assert "\n" not in str(e.value) and "Received: attribute padding_mode='reflect'" in str(e.value)
    assert e.value.items == items
    assert list_unsupported(Modules(), (1, 16, 16)) == []


class InPlaceTrap(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        z = F.relu(y, inplace=True)  # overwrites y, which the add reads afterwards
        return torch.flatten(z + y, 1)


class InPlacePositional(InPlaceTrap):
    def forward(self, x):
        y = self.conv(x)
        return torch.flatten(F.hardswish(y, True) + y, 1)  # inplace given positionally


class InPlaceModule(InPlaceTrap):
    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.conv(x)
        return torch.flatten(self.act(y) + y, 1)


def test_in_place_op_overwriting_a_later_read_is_refused():
    assert list_unsupported(InPlaceTrap(), (1, 2, 2)) == [
        "op=relu in place overwrites 'conv', which 'add' reads afterwards at node 'relu'"]
    assert list_unsupported(InPlacePositional(), (1, 2, 2)) == [
        "op=hardswish in place overwrites 'conv', which 'add' reads afterwards at node "
        "'hardswish'"]
    assert list_unsupported(InPlaceModule(), (1, 2, 2)) == [
        "module=ReLU in place overwrites 'conv', which 'add' reads afterwards at node 'act'"]
    with torch.no_grad():  # what the refusal prevents: torch's add reads relu(y) twice
        net = InPlaceModule()
        x = torch.randn(1, 1, 2, 2)
        assert torch.equal(net(x), 2 * F.relu(net.conv(x)).flatten(1))


def test_zeropad_and_asymmetric_pads():
    class Pad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pad = nn.ZeroPad2d((0, 1, 2, 0))
            self.conv = nn.Conv2d(2, 3, 3, stride=2)

        def forward(self, x):
            return torch.flatten(self.conv(F.pad(self.pad(x), (1, 0, 0, 1))), 1)

    spec = import_torch(Pad(), input_shape=(2, 7, 7)).spec
    assert [s.get("padding") for s in spec if s["kind"] == "zeropad2d"] == [[0, 1, 2, 0],
                                                                            [1, 0, 0, 1]]
    if "zeropad2d" not in KINDS:
        pytest.skip("the zeropad2d kind is not in this checkout yet: the spec is checked, the "
                    "numbers are not")
    _prove(Pad(), (2, 7, 7))


def test_an_input_the_module_cannot_take_is_one_line():
    with pytest.raises(ValueError, match=r"does not run on input_shape \(2, 16, 16\): Given") as e:
        import_torch(Modules(), input_shape=(2, 16, 16))  # 1 channel
    assert "\n" not in str(e.value)


# --- sources: a module:function string, a state_dict file ---------------------------------------


def small_net() -> nn.Module:
    """For the "module:function" test."""
    return Modules()


def test_module_function_string_and_state_dict_file(tmp_path):
    net = _randomize(Modules())
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    imp = import_torch(f"{__name__}:small_net", input_shape=(1, 16, 16), state_dict=path)
    for k, v in imp.state.items():
        # the file's values (cast to the float32 module small_net builds), not a fresh init
        np.testing.assert_array_equal(v, net.state_dict()[k].float().numpy())
    with pytest.raises(ValueError, match="Received: 'no_colon'"):
        import_torch("no_colon", input_shape=(1, 16, 16))


class _Payload:
    """A pickle that creates a folder when it is unpickled (by a loader that runs code)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"fc.weight": _Payload(marker)}, path)
    with pytest.raises(ImportFileError) as e:
        import_torch(Modules(), input_shape=(1, 16, 16), state_dict=path)
    assert "\n" not in str(e.value) and "weights_only" in str(e.value)
    assert not marker.exists()  # nothing ran
    torch.load(path, weights_only=False)  # the control: a loader that runs code does run it
    assert marker.exists()


def test_a_state_dict_that_does_not_fit_is_one_line(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ImportFileError, match="does not fit") as e:
        import_torch(Modules(), input_shape=(1, 16, 16), state_dict=path)
    assert "\n" not in str(e.value)


# --- torchvision ------------------------------------------------------------------------------


def _torchvision():
    try:
        from reference.importers.torchvision_compat import load

        return load()
    except ImportError:
        pytest.skip("torchvision is not installed")


# (name, kwargs, input side, gradients too). vgg11_bn and alexnet (~130M / ~60M parameters,
# mostly their 4096-wide heads) are compared forward only, to keep the run short. The
# depthwise nets run at 32x32 (their last stage then 1x1): torch's float64 depthwise conv has
# no fast CPU kernel, and mobilenet_v2 at 64x64 spends ~70 s in torch's forward and backward.
TORCHVISION = [
    ("resnet18", {}, 64, True), ("mobilenet_v2", {}, 32, True),
    ("mobilenet_v3_small", {}, 64, True), ("densenet121", {}, 64, True),
    ("shufflenet_v2_x0_5", {}, 64, True), ("squeezenet1_1", {}, 64, True),
    ("googlenet", {"aux_logits": False, "init_weights": True}, 64, True),
    ("efficientnet_b0", {}, 32, True), ("mnasnet0_5", {}, 32, True),
    ("regnet_y_400mf", {}, 64, True), ("vgg11_bn", {}, 64, False), ("alexnet", {}, 64, False),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs,side,grads", TORCHVISION,
                         ids=[t[0] for t in TORCHVISION])
def test_torchvision_model_imports_and_matches_in_float64(name, kwargs, side, grads):
    tv = _torchvision()
    torch.manual_seed(0)
    net = getattr(tv.models, name)(weights=None, **kwargs)
    imp = import_torch(net, input_shape=(3, side, side))
    assert set(imp.origin.values()) >= {k.rsplit(".", 1)[0] for k in net.state_dict()}
    missing = {s["kind"] for s in imp.spec} - set(KINDS)
    if missing:
        pytest.skip(f"kind(s) {sorted(missing)} not in this checkout yet")
    # the tie-heavy batch where ties decide something: the gradient of a max-pool's tied
    # windows (the mobile nets and regnet have no max-pool; a tie's forward value is the same
    # whichever window wins, so the forward-only nets gain nothing from it)
    ties = ("ties",) if grads and any(s["kind"] == "maxpool2d" for s in imp.spec) else ()
    _prove(net, (3, side, side), grads=grads, inputs=("random", *ties))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5"])
def test_torchvision_model_matches_in_train_mode(name):
    """Training mode: BatchNorm's batch statistics (these two nets have no dropout). At 64x64
    the last stage is 2x2, so each BatchNorm there normalizes over 2 * 4 = 8 values: enough to
    stay well conditioned (at 32x32 and batch 2 it would be 2 values, and every framework's
    `skylark check` then leaves the float64 budget at layer4's BatchNorm)."""
    tv = _torchvision()
    torch.manual_seed(0)
    net = getattr(tv.models, name)(weights=None)
    _prove(net, (3, 64, 64), training=True)
