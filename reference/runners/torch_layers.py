"""torch modules for what torch.nn cannot say directly (used by reference.kinds).

- TF's "same" padding puts the odd extra pixel bottom/right, and torch's padding="same" refuses
  stride > 1 (and pads symmetrically): `Conv2dTF` pads explicitly with F.pad, then convolves.
- max-pool "same" padding must pad with -inf (a 0 would win in an all-negative window):
  `MaxPool2dTF` does F.pad(value=-inf), then pools unpadded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


class MaskedDropout(nn.Module):
    """Dropout whose keep-mask is given (`.mask`, set by the runner before each training
    forward), so torch drops exactly the elements every other framework drops."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.mask = None

    def forward(self, x):
        if not self.training:
            return x
        if self.mask is None or tuple(self.mask.shape) != tuple(x.shape):
            raise RuntimeError(f"MaskedDropout needs a keep-mask of shape {tuple(x.shape)}")
        keep = 1 - self.p
        mask = self.mask.to(x.dtype)
        return x * (mask / keep if keep else mask * 0)  # torch's order: scale the mask


class MaskedStochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth with its noise given (`.mask`, (N, 1, 1, 1) for mode
    "row" or (1, 1, 1, 1) for "batch", set by the runner before each training forward), in
    torchvision's own steps (torchvision/ops/stochastic_depth.py): the noise divided by the
    survival rate when that is > 0, then multiplied into the input; eval, and p = 0, return the
    input itself."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        noise = self.mask.to(x.dtype)
        if survival_rate > 0.0:
            noise = noise / survival_rate  # torchvision: noise.div_(survival_rate)
        return x * noise


class Rescale(nn.Module):
    """x * scale + offset, each a number or one per channel ((C, 1, 1) on an NCHW map), the
    constants cast to x's dtype (one rounding to nearest); no parameters."""

    def __init__(self, scale, offset) -> None:
        super().__init__()
        self.scale, self.offset = scale, offset

    def _constant(self, v, x):
        t = torch.tensor(v, dtype=torch.float64).to(x.dtype)
        return t.reshape(-1, *(1,) * (x.ndim - 2)) if t.ndim else t

    def forward(self, x):
        return x * self._constant(self.scale, x) + self._constant(self.offset, x)


class Hardsigmoid(nn.Module):
    """nn.Hardsigmoid, exact in float64 too. torch's hardsigmoid_backward multiplies by a
    FLOAT32 1/6 for every dtype (aten/src/ATen/native/cpu/Activation.cpp: `const scalar_t
    one_sixth(1.0f / 6.0f)`), so its float64 gradient is 3e-8 relative off. In float64 this is
    a where on x instead (torch's own kinks: the gradient 1/6 strictly inside -3 < x < 3, 0 at
    both ends); in float32 it is F.hardsigmoid itself."""

    def forward(self, x):
        if x.dtype != torch.float64:
            return F.hardsigmoid(x)
        inside = (x > -3) & (x < 3)
        return torch.where(inside, (x + 3) / 6, (x >= 3).to(x.dtype))


class AvgPool2dTF(nn.Module):
    """TF's "same" average pooling: the mean of each window's REAL cells, with TF's padding
    (the odd pixel bottom/right), which nn.AvgPool2d cannot say (its padding is symmetric).
    Exact: zero padding (F.pad), each window's sum (F.avg_pool2d with divisor_override=1 divides
    by 1), divided by the number of real cells in it (the same sum over a padded map of ones)."""

    def __init__(self, kernel_size, stride, pads=(0, 0, 0, 0)) -> None:
        super().__init__()
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.pads = tuple(pads)

    def _window_sum(self, x):
        t, b, l, r = self.pads
        return F.avg_pool2d(F.pad(x, (l, r, t, b)), self.kernel_size, self.stride,
                            divisor_override=1)

    def forward(self, x):
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
        return self._window_sum(x) / self._window_sum(ones)


class AddN(nn.Module):
    """The sum of a list of tensors, left to right (skylark's Add)."""

    def forward(self, xs):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        return out


class Cat(nn.Module):
    """torch.cat along the channels (dim 1 of NCHW; the features of a flat input)."""

    def forward(self, xs):
        return torch.cat(list(xs), dim=1)


class Mul(nn.Module):
    """[x, gate] -> x * gate, broadcast (squeeze-excite's (N, C, 1, 1) gate)."""

    def forward(self, xs):
        return xs[0] * xs[1]


class ChannelSlice(nn.Module):
    """x[:, start:stop]: a channel range (one half of ShuffleNet's x.chunk(2, dim=1))."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x):
        return x[:, self.start:self.stop]


class AddAfterReLU(AddN):
    """PLANTED BUG (tests only): the residual added after the block's ReLU, relu(h) + x,
    instead of before it, relu(h + x) (the graph's ReLU after the Add still runs)."""

    def forward(self, xs):
        return super().forward([torch.relu(xs[0]), *xs[1:]])
