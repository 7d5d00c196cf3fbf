"""The PyTorch reference: an nn.Module built from a spec, autograd for every gradient.

torch has skylark's layouts (NCHW, OIHW, Linear (out, in), CHW flatten), so node "layer1.0.conv1"
is the submodule at that path and the state_dict names match skylark's. Each layer comes from its
kind's `torch` builder (reference.kinds); what torch.nn cannot express directly is in
reference.runners.torch_layers. `GraphModule.forward` walks the nodes in order
(reference.spec.run_graph): a tensor read twice is read twice, and autograd adds its two gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skylark.optim import Schedule

from ..kinds import KINDS, require_builders
from ..spec import geometry, run_graph
from ..transfer import from_torch, to_torch
from .runner import PassGrads, Runner, name_tensors
from .torch_optim import clip_, set_lr, torch_optimizer, torch_scheduler

require_builders("torch")

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


_OWN = ("spec", "geo", "nodes", "training")  # GraphModule's own attributes, and torch's mode


class GraphModule(nn.Module):
    """The spec's nodes as submodules at their names' paths ("layer1.0.conv1" is
    self.layer1[0].conv1, so its state_dict key is "layer1.0.conv1.weight", as skylark names
    it); forward runs them in the spec's order, each on the outputs it reads."""

    def __init__(self, spec: list[dict], geo, mods) -> None:
        super().__init__()
        self.spec, self.geo = spec, geo
        self.nodes = list(mods)  # a plain list: registered below, once, at their paths
        # Shortest paths first, so node "layer1" is registered before "layer1.conv" hangs
        # under it (a placeholder made first would be replaced, losing its children).
        for g in sorted(geo, key=lambda g: g.name.count(".")):
            *path, leaf = g.name.split(".")
            clash = [p for p in (*path, leaf) if hasattr(nn.Module, p) or p in _OWN]
            if clash:
                raise ValueError(f"node {g.name!r}: {clash[0]!r} is an attribute of torch's "
                                 f"nn.Module, so torch cannot hold a submodule by that name; "
                                 f"rename the node. Received: name={g.name!r}")
            parent = self
            for part in path:
                if part not in parent._modules:
                    parent._modules[part] = nn.Module()
                parent = parent._modules[part]
            parent._modules[leaf] = self.nodes[g.index]

    def __getitem__(self, i: int) -> nn.Module:
        return self.nodes[i]

    def forward_all(self, x) -> list:
        """Every node's output, in order."""
        return run_graph(self.spec, self.geo, x,
                         lambda s, g, h: self.nodes[g.index](h))

    def forward(self, x):
        return self.forward_all(x)[-1]


def build_torch_model(spec: list[dict], input_shape, dtype: str = "float32",
                      plant: str | None = None) -> GraphModule:
    """The nn.Module whose submodule at each node's name mirrors that skylark node (same
    state_dict names).

    `plant` is the test-only bug hook (reference.runners.runner), passed to every builder."""
    geo = geometry(spec, input_shape)
    mods = [KINDS[s["kind"]].torch(s, g, plant) for s, g in zip(spec, geo, strict=True)]
    return GraphModule(spec, geo, mods).to(_DTYPES[dtype])


class TorchRunner(Runner):
    name = "torch"

    def versions(self):
        return {**super().versions(), "torch": torch.__version__}

    def _build(self, params):
        self.model = build_torch_model(self.spec, self.input_shape, self.dtype, self.plant)
        # "dense_hwc" is refused by to_torch (torch has skylark's flatten order)
        plant = self.plant if self.plant == "kernel_transposed" else None
        state = to_torch(params, self.spec, plant=plant)
        own = self.model.state_dict()
        # torch's BatchNorm counter has no skylark counterpart: it starts at torch's 0
        state.update({k: v.numpy() for k, v in own.items() if k.endswith("num_batches_tracked")})
        self.model.load_state_dict(
            {k: torch.tensor(v, dtype=own[k].dtype) for k, v in state.items()}, strict=True
        )
        self.optimizer = None

    def _loss(self, logits, labels):
        reduction = self.loss["reduction"]
        if self.plant == "loss_sum":  # planted bug, tests only
            reduction = "sum"
        return F.cross_entropy(logits, labels, reduction=reduction,
                               label_smoothing=self.loss["label_smoothing"])

    def _set_mode(self, training: bool, masks) -> None:
        self.model.train(training)
        for i, mask in masks.items():
            self.model[i].mask = torch.tensor(mask)

    def _stats(self) -> dict:
        """The buffers (running statistics) by skylark name."""
        names = [k for k in self.model.state_dict() if k.endswith(("running_mean", "running_var"))]
        state = self.model.state_dict()
        return {k: state[k].detach().numpy().copy() for k in names}

    def trace(self, x, labels, cotangent, *, training=True, masks=None):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        self._set_mode(training, self._check_masks(masks, len(x), training))
        xt = torch.tensor(x, requires_grad=True)
        outs = self.model.forward_all(xt)
        h = outs[-1]
        loss = self._loss(h, torch.tensor(labels))
        stats = self._stats() if training else {}
        names = [n for n, _ in self.model.named_parameters()]
        srcs = [xt, *outs, *(p for _, p in self.model.named_parameters())]
        passes = {}
        for tag, target, seed in (("loss", loss, None), ("cot", h, torch.tensor(cot))):
            grads = torch.autograd.grad(target, srcs, grad_outputs=seed, retain_graph=True)
            g = [t.detach().numpy().copy() for t in grads]
            n = len(outs)
            params = from_torch(dict(zip(names, g[1 + n:], strict=True)), self.spec, grads=True)
            passes[tag] = PassGrads(g[0], g[1 : 1 + n], params)
        return name_tensors([o.detach().numpy().copy() for o in outs],
                            loss.detach().numpy().copy(), passes, stats, self.node_names)

    def _train_setup(self):
        # torch.optim is the definition skylark's optimizers follow: used as it is.
        self.optimizer = torch_optimizer(self.model.parameters(), self.optim)
        self._scheduler = None
        if self.plant == "torch_schedule_per_iteration":  # planted bug, tests only
            set_lr(self.optimizer, self.lr)
            self._scheduler = torch_scheduler(self.optimizer,
                                              Schedule.from_dict(self.schedule))

    def train_step(self, x, labels, *, masks=None, lr=None):
        x, labels = self._check_batch(x, labels)
        if self.optimizer is None:
            raise RuntimeError("torch: call train_setup(...) first")
        self._set_mode(True, self._check_masks(masks, len(x), True))
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.model(torch.tensor(x)), torch.tensor(labels))
        loss.backward()
        clip_(self.model.parameters(), self.clip)
        if self._scheduler is None:
            set_lr(self.optimizer, self.lr if lr is None else lr)
        self.optimizer.step()
        if self._scheduler is not None:  # the per-epoch schedule stepped every iteration
            self._scheduler.step()
        return float(loss.detach())

    def predict(self, x):
        (x,) = self._check_batch(x)
        self.model.eval()
        with torch.no_grad():
            return self.model(torch.tensor(x)).numpy().copy()

    def get_params(self):
        self._check_setup()
        return from_torch(
            {k: v.detach().numpy().copy() for k, v in self.model.state_dict().items()}, self.spec
        )
