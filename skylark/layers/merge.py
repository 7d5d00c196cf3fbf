"""The layers that join or split tensors in a graph: Add, Concat, Multiply, ChannelSlice.

Add, Concat and Multiply take a LIST of inputs (`n_inputs` is not 1) and their backward returns
one gradient per input, in the same order. ChannelSlice takes one input and is how a graph
splits channels (ShuffleNet's x.chunk(2, dim=1) is two ChannelSlice nodes on one tensor: the
graph adds their gradients, each zero outside its own channels).
"""

from __future__ import annotations

import numpy as np

from .base import Layer, check_grad


def _as_inputs(xs, layer: str, n: int | None) -> list[np.ndarray]:
    """The inputs as arrays of one float dtype and one rank, >= 2 dims (N, ...)."""
    if not isinstance(xs, (list, tuple)):
        raise ValueError(f"{layer} takes a list of inputs. Received: {type(xs).__name__}")
    if (n is None and len(xs) < 2) or (n is not None and len(xs) != n):
        want = "two or more" if n is None else str(n)
        raise ValueError(f"{layer} takes {want} inputs. Received: {len(xs)} inputs")
    xs = [np.asarray(x) for x in xs]
    dtypes = {x.dtype for x in xs}
    if len(dtypes) != 1 or xs[0].dtype.kind != "f":
        raise ValueError(f"{layer} inputs must share one float dtype. "
                         f"Received: dtypes {[x.dtype.name for x in xs]}")
    if len({x.ndim for x in xs}) != 1 or xs[0].ndim < 2:
        raise ValueError(f"{layer} inputs must be batches of one rank. "
                         f"Received: shapes {[x.shape for x in xs]}")
    return xs


class Add(Layer):
    """y = x_1 + x_2 + ... + x_n, all of one shape (no broadcasting: a ResNet shortcut whose
    shape differs from its block's is a bug to report, not to broadcast away). dx_k = dy."""

    kind = "add"
    n_inputs = None

    def __init__(self) -> None:
        super().__init__()
        self._shapes = None

    def forward(self, xs) -> np.ndarray:
        xs = _as_inputs(xs, "Add", None)
        if len({x.shape for x in xs}) != 1:
            raise ValueError(f"Add needs inputs of one shape. "
                             f"Received: shapes {[x.shape[1:] for x in xs]} (per sample)")
        self._shapes = [x.shape for x in xs]
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x  # left to right, as torch's a + b + c
        return y

    def backward(self, dy) -> list[np.ndarray]:
        shapes = self._need_cache(self._shapes)
        dy = check_grad(dy, shapes[0], "Add")
        return [dy] * len(shapes)

    def output_shape(self, input_shapes):
        return tuple(input_shapes[0])


class Concat(Layer):
    """Concatenation along the channels (axis 1 of NCHW, or of flat (N, F) features), torch's
    torch.cat(xs, dim=1). In NHWC frameworks the same concatenation is on the LAST axis: the
    porting trap. Every other axis must agree. dx_k = dy's slice of input k's channels."""

    kind = "concat"
    n_inputs = None

    def __init__(self) -> None:
        super().__init__()
        self._splits = self._shape = None

    def forward(self, xs) -> np.ndarray:
        xs = _as_inputs(xs, "Concat", None)
        if len({(x.shape[0], *x.shape[2:]) for x in xs}) != 1:
            raise ValueError("Concat joins along the channels; every other axis must agree. "
                             f"Received: shapes {[x.shape[1:] for x in xs]} (per sample)")
        self._splits = np.cumsum([x.shape[1] for x in xs])
        y = np.concatenate(xs, axis=1)
        self._shape = y.shape
        return y

    def backward(self, dy) -> list[np.ndarray]:
        splits = self._need_cache(self._splits)
        dy = check_grad(dy, self._shape, "Concat")
        starts = [0, *splits[:-1]]
        return [dy[:, a:b] for a, b in zip(starts, splits, strict=True)]

    def output_shape(self, input_shapes):
        first = tuple(input_shapes[0])
        return (sum(int(s[0]) for s in input_shapes), *first[1:])


class Multiply(Layer):
    """y = x * gate, element-wise, the gate broadcast over the axes where its size is 1:
    squeeze-excite's (N, C, 1, 1) gate over an (N, C, H, W) map. Inputs [x, gate]; each axis
    of the gate is x's size or 1. dx = dy * gate; dgate = the sum of dy * x over the
    broadcast axes (the porting trap: a gate laid out (N, 1, 1, C) in NHWC is the same gate)."""

    kind = "multiply"
    n_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, xs) -> np.ndarray:
        x, gate = _as_inputs(xs, "Multiply", 2)
        if x.shape[0] != gate.shape[0] or any(
                gs not in (1, xs_) for gs, xs_ in zip(gate.shape[1:], x.shape[1:], strict=True)):
            raise ValueError("Multiply's gate must have x's size or 1 on each axis. "
                             f"Received: x {x.shape[1:]}, gate {gate.shape[1:]} (per sample)")
        self._cache = (x, gate)
        return x * gate

    def backward(self, dy) -> list[np.ndarray]:
        x, gate = self._need_cache(self._cache)
        dy = check_grad(dy, x.shape, "Multiply")
        axes = tuple(i for i in range(1, x.ndim) if gate.shape[i] != x.shape[i])
        d_gate = dy * x
        if axes:
            d_gate = d_gate.sum(axis=axes, keepdims=True)
        return [dy * gate, d_gate]

    def output_shape(self, input_shapes):
        return tuple(input_shapes[0])


class ChannelSlice(Layer):
    """y = x[:, start:stop]: channels start .. stop - 1 of an NCHW map (or features of a flat
    (N, F) input), torch's x[:, start:stop] / x.chunk(k, dim=1)[i]. dx is dy in those channels,
    zero elsewhere."""

    kind = "channelslice"

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        for name, v in (("start", start), ("stop", stop)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"ChannelSlice's {name} must be an int >= 0. "
                                 f"Received: {name}={v!r}")
        if stop <= start:
            raise ValueError(f"ChannelSlice needs start < stop. "
                             f"Received: start={start}, stop={stop}")
        self.start, self.stop = int(start), int(stop)
        self._shape = None

    def __repr__(self) -> str:
        return f"ChannelSlice(start={self.start}, stop={self.stop})"

    def config(self) -> dict:
        return {"start": self.start, "stop": self.stop}

    def _check(self, shape) -> None:
        if len(shape) < 2 or shape[1] < self.stop:
            raise ValueError(f"ChannelSlice({self.start}, {self.stop}) needs at least "
                             f"{self.stop} channels. Received: input with shape {shape}")

    def forward(self, x) -> np.ndarray:
        x = np.asarray(x)
        self._check(x.shape)
        self._shape = x.shape
        return x[:, self.start:self.stop]

    def backward(self, dy) -> np.ndarray:
        shape = self._need_cache(self._shape)
        dy = check_grad(dy, (shape[0], self.stop - self.start, *shape[2:]), "ChannelSlice")
        dx = np.zeros(shape, dy.dtype)
        dx[:, self.start:self.stop] = dy
        return dx

    def output_shape(self, input_shape):
        self._check((1, *input_shape))
        return (self.stop - self.start, *tuple(input_shape)[1:])
