"""The layer protocol every skylark layer follows, and the argument checks they share."""

from __future__ import annotations

import numpy as np

DTYPES = ("float32", "float64")


def as_dtype(dtype) -> np.dtype:
    """`"float32"`, `np.float64`, ... -> np.dtype; anything else is a ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}. Received: dtype={dtype!r}")
    return dt


def pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> (h, w); bools, floats and other lengths are rejected."""
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(f"{name} must be an int or a pair of ints. Received: {name}={value!r}")
    return int(items[0]), int(items[1])


def positive_pair(value, name: str) -> tuple[int, int]:
    h, w = pair(value, name)
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be >= 1. Received: {name}={value!r}")
    return h, w


def check_input(x, ndim: int, layer: str, dtype: np.dtype | None) -> np.ndarray:
    """Return `x` as an array of `dtype` (no copy when it already is one) after a rank check.

    `dtype=None` (parameter-free layers) keeps a floating input's dtype; integers become float64.
    """
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(
            f"{layer} expects a {ndim}-D input. Received: input with shape {x.shape}"
        )
    # dtype.kind, not np.issubdtype: the same test at a tenth of the cost (this runs in every
    # layer's forward; ~1 us per call saved at batch 1)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{layer} expects a numeric input. Received: dtype={x.dtype}")
    if dtype is None:
        dtype = x.dtype if x.dtype.kind == "f" else np.float64
    return x.astype(dtype, copy=False)


def check_grad(dy, shape: tuple[int, ...], layer: str) -> np.ndarray:
    """`dy` as an array if it has the layer output's `shape`; else ValueError naming both
    (numpy would broadcast a (1, ...) or (..., 1) gradient and return wrong numbers)."""
    dy = np.asarray(dy)
    if dy.shape != tuple(shape):
        raise ValueError(f"{layer}.backward expects a gradient of the output's shape "
                         f"{tuple(shape)}. Received: dy with shape {dy.shape}")
    return dy


class Layer:
    """A layer maps `forward(x) -> y` and `backward(dy) -> dx`.

    `forward` keeps only what `backward` needs (the cache). `backward` *adds* each parameter's
    gradient into `self.grads[name]`, as torch accumulates into `.grad`; `zero_grad()` clears them.
    `training` (torch's name; set by Sequential.train()/.eval()) matters to the layers whose
    forward differs between the two modes (BatchNorm2d, Dropout). `kind` names the layer in a
    model's config (skylark.models).
    """

    kind: str = ""
    param_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()  # state that is not trained (BatchNorm running stats)
    # how many tensors forward takes: 1 (an array), None (a list of two or more: Add, Concat)
    # or k (a list of k: Multiply's [x, gate]); backward returns one gradient per input
    n_inputs: int | None = 1

    def __init__(self) -> None:
        self.grads: dict[str, np.ndarray] = {}
        self.training = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def config(self) -> dict:
        """The constructor arguments by their torch names, JSON-able, without dtype and seed:
        `type(layer)(**layer.config())` (plus `dtype=`, `seed=` for a layer with parameters)
        builds the same architecture, freshly initialised. Pairs are [h, w] lists."""
        return {}

    def params(self) -> dict[str, np.ndarray]:
        """Parameters by torch name (`weight`, `bias`); the live arrays, not copies."""
        return {n: getattr(self, n) for n in self.param_names if getattr(self, n) is not None}

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-trainable state by torch name (`running_mean`, ...); the live arrays."""
        return {n: getattr(self, n) for n in self.buffer_names}

    def zero_grad(self) -> None:
        self.grads = {n: np.zeros_like(p) for n, p in self.params().items()}

    def _grad(self, name: str) -> np.ndarray:
        """The accumulated gradient of parameter `name`, C-contiguous (so a reshape of it is a
        view to add into in place), zeros if there is none yet."""
        g = self.grads.get(name)
        if g is None:
            g = self.grads[name] = np.zeros_like(getattr(self, name))
        elif not g.flags.c_contiguous:  # one a caller put there: a reshape would be a copy
            g = self.grads[name] = np.ascontiguousarray(g)
        return g

    def _accumulate(self, name: str, grad: np.ndarray) -> None:
        if name in self.grads:
            self.grads[name] += grad
        else:
            self.grads[name] = grad

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy = d loss / d output -> dx = d loss / d input. Layers with parameters also take
        `input_grad=False`: fill the parameter gradients only and return None.

        Contract: never write into `dy` (a graph may hand the same array to several layers:
        Add returns dy itself for each of its inputs); tests/test_graph.py runs every backward
        of the zoo on read-only gradients."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def _need_cache(self, cache):
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return cache
