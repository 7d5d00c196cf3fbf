"""Sequential, the Skylark CNN, and `.npz` checkpoints written atomically."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .files import atomic_write
from .layers import Conv2D, Dense, Flatten, Layer, MaxPool2D
from .layers.base import as_dtype

_META_KEY = "__skylark_meta__"
_EXTRA = "__extra__/"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist (both a ValueError and a FileNotFoundError)."""


class Sequential:
    """Layers applied in order; parameters named like torch's state_dict (`0.weight`, `3.bias`)."""

    def __init__(self, *layers: Layer) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(
                    f"Sequential takes skylark layers. Received: layer {i} = {layer!r}"
                )
        self.layers = list(layers)
        self._flat: _FlatGrads | None = None

    def __getstate__(self) -> dict:
        # A copy or pickle must not carry the flat buffer: its views would come back as
        # separate arrays that still pass the identity checks. zero_grad rebuilds it.
        return {**self.__dict__, "_flat": None}

    def __repr__(self) -> str:
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({body}\n)"

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate d loss / d output through every layer; returns d loss / d input.

        `input_grad=False` (training: the data needs no gradient) returns None and lets the
        first layer skip its input gradient, as torch does for an input without requires_grad.
        """
        if not self.layers:
            return dy if input_grad else None
        for layer in reversed(self.layers[1:]):
            dy = layer.backward(dy)
        first = self.layers[0]
        if input_grad:
            return first.backward(dy)
        if first.param_names:  # it still owes its parameter gradients
            first.backward(dy, input_grad=False)
        return None

    def zero_grad(self) -> None:
        """Clear every parameter's gradient. When the parameters share one dtype, their
        gradients live in ONE flat buffer, cleared by one fill (each layer's `grads[name]` a
        view of it), which `SGD` updates in one pass (see `flat_grads`). As torch's
        `zero_grad(set_to_none=False)`, this zeroes the arrays in place: copy what `grads()`
        returned to keep it."""
        flat = self._flat_grad_plan()
        if flat is None:
            for layer in self.layers:
                layer.zero_grad()
            return
        flat.buffer.fill(0)
        for layer, views in flat.layers:
            layer.grads = dict(views)  # a fresh dict: one a caller edited is not reused

    def flat_grads(self) -> tuple[np.ndarray, list[tuple[str, np.ndarray, slice]]] | None:
        """(buffer, [(name, parameter, span)]): the flat gradient buffer and where each
        parameter's gradient lies in it, if every layer still holds the views `zero_grad`
        gave it (and the same parameter arrays); else None, and the caller must go parameter
        by parameter. buffer[span].reshape(parameter.shape) is the gradient of `parameter`."""
        flat = self._flat
        if flat is None or not flat.current(self.layers) or not flat.intact():
            return None
        return flat.buffer, flat.entries

    def _flat_grad_plan(self) -> _FlatGrads | None:
        """The flat gradient buffer for the current layers and parameters (made anew when they
        changed), or None when the parameters' dtypes differ or there are none."""
        if self._flat is None or not self._flat.current(self.layers):
            self._flat = _FlatGrads.build(self.layers)
        return self._flat

    def train(self, mode: bool = True) -> Sequential:
        """Training mode (torch's name): BatchNorm2d uses batch statistics, Dropout drops."""
        for layer in self.layers:
            layer.training = bool(mode)
        return self

    def eval(self) -> Sequential:
        """Evaluation mode: running statistics, no dropout."""
        return self.train(False)

    @property
    def training(self) -> bool:
        return all(layer.training for layer in self.layers)

    def params(self) -> dict[str, np.ndarray]:
        """Ordered name -> live parameter array, with torch state_dict names."""
        return {
            f"{i}.{name}": p
            for i, layer in enumerate(self.layers)
            for name, p in layer.params().items()
        }

    def buffers(self) -> dict[str, np.ndarray]:
        """Ordered name -> live non-trainable state (BatchNorm running statistics)."""
        return {
            f"{i}.{name}": b
            for i, layer in enumerate(self.layers)
            for name, b in layer.buffers().items()
        }

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers, layer by layer (torch's state_dict, without torch's
        num_batches_tracked): what a checkpoint holds and what the references load."""
        return {
            f"{i}.{name}": a
            for i, layer in enumerate(self.layers)
            for name, a in {**layer.params(), **layer.buffers()}.items()
        }

    def grads(self) -> dict[str, np.ndarray]:
        """Ordered name -> accumulated gradient, the same keys as `params()`."""
        return {
            f"{i}.{name}": layer.grads[name]
            for i, layer in enumerate(self.layers)
            for name in layer.params()
        }

    def load_params(self, mapping) -> None:
        """Copy `mapping` (name -> array) into the parameters, in place and in their dtype.

        Rejects missing, unexpected and mis-shaped entries, naming each; nothing is copied
        unless everything fits.
        """
        _load(self.params(), mapping)

    def load_state(self, mapping) -> None:
        """`load_params` for parameters and buffers together (the keys of `state()`)."""
        _load(self.state(), mapping)

    def save(self, path, metadata: dict | None = None,
             extra: dict[str, np.ndarray] | None = None) -> Path:
        """Write the parameters, JSON-able `metadata` and `extra` arrays (optimizer state) to
        `path` as `.npz`, atomically (skylark.files): a temporary file in the same folder is
        renamed over `path` only once fully written, so a crash never leaves a half-written
        checkpoint in place of a good one, and a full disk keeps the previous one."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"checkpoints are .npz files. Received: path={str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(self.state())
        arrays[_META_KEY] = np.array(json.dumps(metadata or {}))
        arrays.update({_EXTRA + k: np.asarray(v) for k, v in (extra or {}).items()})
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path

    def load(self, path) -> dict:
        """Load parameters saved by `save` into this model; returns the saved metadata, with
        the `extra` arrays under `"extra"` when there are any."""
        arrays, out, extra = read_checkpoint(path)
        try:
            self.load_state(arrays)
        except ValueError as e:
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit this model: {e}") from e
        if extra:
            out["extra"] = extra
        return out


def read_checkpoint(path) -> tuple[dict, dict, dict]:
    """(state arrays, metadata dict, extra arrays) of the checkpoint at `path`, loading
    nothing into any model; CheckpointError (a ValueError) for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint at this path. Received: path={str(path)!r}")
    try:
        # Open the file ourselves: np.load(path) leaks its handle when the zip is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r} (corrupt or not an .npz): {e}"
        ) from e
    meta = _metadata(arrays.pop(_META_KEY, None), path)
    extra = {k[len(_EXTRA):]: arrays.pop(k) for k in list(arrays) if k.startswith(_EXTRA)}
    return arrays, meta, extra

def _metadata(meta, path: Path) -> dict:
    """The checkpoint's metadata as a dict ({} when it has none); CheckpointError otherwise."""
    if meta is None:
        return {}
    try:
        out = json.loads(str(meta)) if meta.ndim == 0 and meta.dtype.kind == "U" else None
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: its metadata is not a JSON object. "
                              f"Received: {str(meta)[:80]!r}")
    return out

class _FlatGrads:
    """One buffer for the gradients of a Sequential's parameters, in `params()` order."""

    def __init__(self, buffer, layers, entries, params, declared, with_params) -> None:
        self.buffer = buffer  # (total,) the gradients, back to back
        self.layers = layers  # [(layer, [(param name, view of buffer)])], layers with params
        self.entries = entries  # [(model param name, param, slice of buffer)]
        self.params = params  # [(layer, param name, param, view)]: what the views were for
        # [(layer, name, array or None)] for every declared parameter (a bias=False included):
        # a parameter that appears, disappears or is swapped for another array is noticed
        self.declared = declared
        self.with_params = with_params  # the layers that declare parameters, in order

    def current(self, layers) -> bool:
        """Whether `layers` are the same layers holding the same parameter arrays (or None)."""
        if [layer for layer in layers if layer.param_names] != self.with_params:
            return False
        for layer, name, p in self.declared:
            if getattr(layer, name) is not p:
                return False
        return True

    def intact(self) -> bool:
        """Whether every layer's `grads[name]` is still its view of the buffer."""
        for layer, name, _, view in self.params:
            if layer.grads.get(name) is not view:  # replaced by hand or by layer.zero_grad
                return False
        return True

    @classmethod
    def build(cls, layers) -> _FlatGrads | None:
        params = [(i, layer, name, p) for i, layer in enumerate(layers)
                  for name, p in layer.params().items()]
        with_params = [layer for layer in layers if layer.param_names]
        if not params or len({p.dtype for *_, p in params}) != 1 \
                or len({id(layer) for layer in with_params}) != len(with_params):  # used twice
            return None
        buffer = np.zeros(sum(p.size for *_, p in params), params[0][3].dtype)
        per_layer = {id(layer): (layer, []) for _, layer, _, _ in params}
        entries, flat_params, start = [], [], 0
        for i, layer, name, p in params:
            span = slice(start, start + p.size)
            view = buffer[span].reshape(p.shape)
            per_layer[id(layer)][1].append((name, view))
            entries.append((f"{i}.{name}", p, span))
            flat_params.append((layer, name, p, view))
            start += p.size
        declared = [(layer, n, getattr(layer, n)) for layer in with_params
                    for n in layer.param_names]
        return cls(buffer, list(per_layer.values()), entries, flat_params, declared, with_params)


def _load(own: dict, mapping) -> None:
    """Copy `mapping` into the arrays of `own`, all or nothing (see Sequential.load_params)."""
    missing = [k for k in own if k not in mapping]
    extra = [k for k in mapping if k not in own]
    if missing or extra:
        raise ValueError(
            f"parameters do not match the model. Missing: {missing}; unexpected: {extra}. "
            f"Expected keys: {list(own)}"
        )
    arrays = {k: np.asarray(mapping[k]) for k in own}
    for k, p in own.items():
        check_entry(k, arrays[k], p)
    for k, p in own.items():  # only once every entry has passed: all or nothing
        np.copyto(p, arrays[k], casting="same_kind")


def check_entry(name: str, a: np.ndarray, p: np.ndarray) -> None:
    """ValueError naming `name` unless `a` can replace `p` exactly as given: the same shape,
    real numbers, finite, and still finite once rounded to `p`'s dtype."""
    if a.shape != p.shape:
        raise ValueError(f"parameter {name!r} has the wrong shape. Expected: {p.shape}. "
                         f"Received: shape {a.shape}")
    if a.dtype.kind not in "fiu":  # complex would drop its imaginary part; bool, str: no numbers
        raise ValueError(f"parameter {name!r} must hold real numbers. Received: dtype={a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"parameter {name!r} holds nan or inf values")
    with np.errstate(over="ignore"):
        cast = a.astype(p.dtype)
    if not np.isfinite(cast).all():
        worst = a.flat[int(np.argmax(~np.isfinite(cast).ravel()))]
        raise ValueError(f"parameter {name!r} overflows {p.dtype} (largest finite "
                         f"{np.finfo(p.dtype).max:.3g}). Received: a value {float(worst)!r}")

def skylark_cnn(
    input_shape: tuple[int, int, int] = (1, 28, 28),
    *,
    num_classes: int = 10,
    filters: int = 8,
    seed: int = 0,
    dtype="float32",
) -> Sequential:
    """The Skylark net: Conv2D(C, filters, 3, bias=False) -> MaxPool2D(2) -> Flatten -> Dense.

    Input (N, C, H, W); logits (N, num_classes) out (softmax lives in the loss). The Dense size
    follows the input: filters * ((H - 2) // 2) * ((W - 2) // 2), 8*13*13 = 1352 for 28x28.
    The Skylark net's own init (not torch's): conv N(0, 1)/9, dense N(0, 1)/fan_in, bias 0.
    """
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape is (C, H, W). Received: input_shape={input_shape!r}")
    dt = as_dtype(dtype)
    c = int(input_shape[0])
    conv = Conv2D(c, filters, 3, bias=False, dtype=dt)
    pool = MaxPool2D(2)
    feat = pool.output_shape(conv.output_shape(tuple(input_shape)))
    fan_in = int(np.prod(feat))
    dense = Dense(fan_in, num_classes, dtype=dt)
    rng = np.random.default_rng(seed)
    conv.weight[...] = rng.standard_normal(conv.weight.shape) / 9
    dense.weight[...] = rng.standard_normal(dense.weight.shape) / fan_in
    dense.bias[...] = 0
    return Sequential(conv, pool, Flatten(), dense)
