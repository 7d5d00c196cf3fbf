"""The PyTorch reference: an nn.Sequential built from a spec, autograd for every gradient.

torch has skylark's layouts (NCHW, OIHW, Linear (out, in), CHW flatten), so module i is skylark
layer i and the state_dict names match. Two things torch cannot say directly:
- TF's "same" padding puts the odd extra pixel bottom/right, and torch's padding="same" refuses
  stride > 1 (and pads symmetrically): `Conv2dTF` pads explicitly with F.pad, then convolves.
- max-pool "same" padding must pad with -inf (a 0 would win in an all-negative window):
  `MaxPool2dTF` does F.pad(value=-inf) then pools unpadded. Int pool padding uses torch's own
  (which is -inf padding too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .runners import Runner
from .spec import resolved_pads, shapes
from .transfer import from_torch, to_torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class _ExplicitPads:
    """Pads (top, bottom, left, right) with `pad_value` itself, then runs the torch layer
    unpadded: TF's asymmetric "same" puts the odd pixel bottom/right, which torch's symmetric
    `padding=` cannot express."""

    pad_value = 0.0

    def __init__(self, *args, pads=(0, 0, 0, 0), **kwargs) -> None:
        super().__init__(*args, padding=0, **kwargs)
        self.pads = tuple(pads)

    def forward(self, x):
        t, b, l, r = self.pads
        return super().forward(F.pad(x, (l, r, t, b), value=self.pad_value))  # last dim first


class Conv2dTF(_ExplicitPads, nn.Conv2d):
    """nn.Conv2d with explicit zero padding."""


class MaxPool2dTF(_ExplicitPads, nn.MaxPool2d):
    """nn.MaxPool2d with explicit -inf padding (a 0 would win in an all-negative window)."""

    pad_value = -float("inf")


class MaxPool2dLastMax(nn.MaxPool2d):
    """PLANTED BUG (tests only): ties go to the LAST maximum of the window, not the first.

    Pools the input flipped along H and W, then flips back. For non-overlapping windows that tile
    the map exactly (kernel == stride, no padding, H and W multiples of it) the flip maps every
    window onto one window and reverses its row-major order, so the forward values are identical
    and only the tie routing of the gradient changes.
    """

    def forward(self, x):
        return torch.flip(super().forward(torch.flip(x, (2, 3))), (2, 3))


def build_torch_model(spec: list[dict], input_shape, dtype: str = "float32",
                      pool_last_max: bool = False) -> nn.Sequential:
    """nn.Sequential whose module i mirrors skylark layer i (same state_dict names).

    `pool_last_max` is the test-only planted bug (MaxPool2dLastMax)."""
    mods = []
    in_shapes = [tuple(input_shape), *shapes(spec, input_shape)[:-1]]
    for s, pads, shape in zip(spec, resolved_pads(spec, input_shape), in_shapes, strict=True):
        kind = s["kind"]
        if kind == "conv2d":
            args = (s["in_channels"], s["out_channels"], tuple(s["kernel_size"]))
            kw = {"stride": tuple(s["stride"]), "bias": s["bias"]}
            if isinstance(s["padding"], str):  # "valid"/"same": pads resolved for this input
                mods.append(Conv2dTF(*args, pads=pads, **kw))
            else:
                mods.append(nn.Conv2d(*args, padding=tuple(s["padding"]), **kw))
        elif kind == "maxpool2d":
            k, st = tuple(s["kernel_size"]), tuple(s["stride"])
            if pool_last_max:
                if k != st or any(pads) or shape[1] % k[0] or shape[2] % k[1]:
                    raise ValueError("plant pool_last_max needs non-overlapping unpadded windows "
                                     f"that tile the map. Received: {s} on {shape}")
                mods.append(MaxPool2dLastMax(k, st))
            elif isinstance(s["padding"], str):
                mods.append(MaxPool2dTF(k, st, pads=pads))
            else:
                mods.append(nn.MaxPool2d(k, st, padding=tuple(s["padding"])))
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "flatten":
            mods.append(nn.Flatten())
        elif kind == "dense":
            mods.append(nn.Linear(s["in_features"], s["out_features"], bias=s["bias"]))
    return nn.Sequential(*mods).to(_DTYPES[dtype])


class TorchRunner(Runner):
    name = "torch"

    def versions(self):
        return {**super().versions(), "torch": torch.__version__}

    def _build(self, params):
        self.model = build_torch_model(self.spec, self.input_shape, self.dtype,
                                       pool_last_max=self.plant == "pool_last_max")
        # "dense_hwc" is refused by to_torch (torch has skylark's flatten order)
        plant = self.plant if self.plant in ("dense_hwc", "kernel_transposed") else None
        state = to_torch(params, self.spec, plant=plant)
        own = self.model.state_dict()
        self.model.load_state_dict(
            {k: torch.tensor(v, dtype=own[k].dtype) for k, v in state.items()}, strict=True
        )
        self.optimizer = None

    def _loss(self, logits, labels):
        reduction = "sum" if self.plant == "loss_sum" else "mean"  # "sum": planted bug, tests only
        return F.cross_entropy(logits, labels, reduction=reduction)

    def collect(self, x, labels, cotangent):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        xt = torch.tensor(x, requires_grad=True)
        outs, h = [], xt
        for m in self.model:
            h = m(h)
            outs.append(h)
        loss = self._loss(h, torch.tensor(labels))
        names = [n for n, _ in self.model.named_parameters()]
        srcs = [xt, *outs, *(p for _, p in self.model.named_parameters())]
        result = {f"out.{i}": o.detach().numpy().copy() for i, o in enumerate(outs)}
        result["loss"] = loss.detach().numpy().copy()
        for tag, target, seed in (("loss", loss, None), ("cot", h, torch.tensor(cot))):
            grads = torch.autograd.grad(target, srcs, grad_outputs=seed, retain_graph=True)
            g = [t.detach().numpy().copy() for t in grads]
            result[f"{tag}/d.input"] = g[0]
            for i in range(len(outs)):
                result[f"{tag}/d.out.{i}"] = g[1 + i]
            pg = from_torch(dict(zip(names, g[1 + len(outs):], strict=True)), self.spec)
            result.update({f"{tag}/d.{k}": v for k, v in pg.items()})
        return result

    def _train_setup(self):
        # torch.optim.SGD is the definition skylark's SGD follows (dampening 0, no Nesterov).
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr,
                                         momentum=self.momentum)

    def train_step(self, x, labels):
        x, labels = self._check_batch(x, labels)
        if self.optimizer is None:
            raise RuntimeError("torch: call train_setup(lr, momentum) first")
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.model(torch.tensor(x)), torch.tensor(labels))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def predict(self, x):
        (x,) = self._check_batch(x)
        with torch.no_grad():
            return self.model(torch.tensor(x)).numpy().copy()

    def get_params(self):
        self._check_setup()
        return from_torch(
            {k: v.detach().numpy().copy() for k, v in self.model.state_dict().items()}, self.spec
        )

