"""A JSON-able architecture spec: what every reference framework builds its copy of a model from.

    spec = describe(model)            # [{"kind": "conv2d", "in_channels": 1, ...}, {"kind": ...}]
    model2 = build(spec, "float64")   # the same architecture as a skylark Sequential (fresh init)
    shapes(spec, (1, 28, 28))         # [(8, 26, 26), (8, 13, 13), (1352,), (10,)]

An entry is a layer's `config()` (its constructor arguments by torch's names) plus its "kind";
the kinds, their fields and their framework builders are in reference.kinds. Pairs are [h, w]
lists and padding is "valid", "same" or [ph, pw].
"""

from __future__ import annotations

from typing import NamedTuple

import skylark as sk

from .kinds import KINDS, kind_of


class Geometry(NamedTuple):
    """Layer `index` of a spec run on one per-sample input shape."""

    index: int
    in_shape: tuple[int, ...]  # (C, H, W) or (F,)
    out_shape: tuple[int, ...]
    pads: tuple[int, int, int, int] | None  # (top, bottom, left, right) for windowed layers
    flat_source: tuple[int, int, int] | None  # the map whose flatten order a flat output has
    in_flat_source: tuple[int, int, int] | None  # the same for this layer's input


def describe(model: sk.Sequential) -> list[dict]:
    """The layers of `model` as plain dicts (JSON-able); ValueError on a layer we cannot mirror."""
    return [kind_of(layer, i).describe(layer) for i, layer in enumerate(model)]


def _kind(s, i: int):
    kind = s.get("kind") if isinstance(s, dict) else None
    if kind not in KINDS:
        raise ValueError(f"spec layer {i}: kind must be one of {tuple(KINDS)}. Received: {s!r}")
    return KINDS[kind]


def build(spec: list[dict], dtype="float32") -> sk.Sequential:
    """A skylark Sequential with the architecture of `spec` (torch-default init, seed i)."""
    layers = []
    for i, s in enumerate(spec):
        try:
            layers.append(_kind(s, i).build(s, dtype, seed=i))
        except TypeError as e:  # a missing or unknown field
            raise ValueError(f"spec layer {i} ({s.get('kind')}): {e}. Received: {s!r}") from None
    return sk.Sequential(*layers)


def geometry(spec: list[dict], input_shape) -> list[Geometry]:
    """Every layer's Geometry for a per-sample input (C, H, W), validating the stack the way
    skylark's forward would (ranks, channels, features, sizes that fit)."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape is (C, H, W). Received: input_shape={input_shape!r}")
    out, shape, src = [], input_shape, None
    for i, (s, layer) in enumerate(zip(spec, build(spec), strict=True)):
        kind = KINDS[s["kind"]]
        try:
            kind.validate(s, shape)
        except ValueError as e:
            raise ValueError(f"spec layer {i}: {e}") from None
        out_shape = tuple(int(d) for d in layer.output_shape(shape))
        pads = tuple(layer.pads(shape[1:])) if hasattr(layer, "pads") else None
        new_src = kind.flat_source(shape, out_shape, src)
        out.append(Geometry(i, shape, out_shape, pads, new_src, src))
        shape, src = out_shape, new_src
    return out


def shapes(spec: list[dict], input_shape) -> list[tuple[int, ...]]:
    """Per-sample output shape of every layer for an input (C, H, W): (C, H, W) or (F,)."""
    return [g.out_shape for g in geometry(spec, input_shape)]


def param_shapes(spec: list[dict]) -> dict[str, tuple[int, ...]]:
    """Skylark parameter names -> shapes (OIHW conv weights, (out, in) dense weights)."""
    return {k: v.shape for k, v in build(spec).params().items()}


def state_shapes(spec: list[dict]) -> dict[str, tuple[int, ...]]:
    """Parameters and buffers (BatchNorm running statistics): names -> shapes, layer by layer."""
    return {k: v.shape for k, v in build(spec).state().items()}


def buffer_names(spec: list[dict]) -> list[str]:
    """The buffers' names ("3.running_mean", ...), in state order."""
    return list(build(spec).buffers())


__all__ = ["Geometry", "buffer_names", "build", "describe", "geometry", "param_shapes", "shapes",
           "state_shapes"]
