"""A JSON-able architecture spec: what every reference framework builds its copy of a model from.

    spec = describe(model)          # [{"kind": "conv2d", "in_channels": 1, ...}, {"kind": ...}]
    model2 = build(spec, "float64")  # the same architecture as a skylark Sequential (fresh init)
    shapes(spec, (1, 28, 28))        # [(8, 26, 26), (8, 13, 13), (1352,), (10,)]

Kinds and their options (pairs are [h, w] lists, padding is "valid", "same" or [ph, pw]):
conv2d (in_channels, out_channels, kernel_size, stride, padding, bias), maxpool2d (kernel_size,
stride, padding), relu, flatten, dense (in_features, out_features, bias).
"""

from __future__ import annotations

import skylark as sk

KINDS = ("conv2d", "maxpool2d", "relu", "flatten", "dense")


def _pad(padding):
    return padding if isinstance(padding, str) else [int(padding[0]), int(padding[1])]


def describe(model: sk.Sequential) -> list[dict]:
    """The layers of `model` as plain dicts (JSON-able); ValueError on a layer we cannot mirror."""
    spec = []
    for i, layer in enumerate(model):
        if isinstance(layer, sk.Conv2D):
            spec.append({
                "kind": "conv2d", "in_channels": layer.in_channels,
                "out_channels": layer.out_channels, "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride), "padding": _pad(layer.padding),
                "bias": layer.bias is not None,
            })
        elif isinstance(layer, sk.MaxPool2D):
            spec.append({
                "kind": "maxpool2d", "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride), "padding": _pad(layer.padding),
            })
        elif isinstance(layer, sk.ReLU):
            spec.append({"kind": "relu"})
        elif isinstance(layer, sk.Flatten):
            spec.append({"kind": "flatten"})
        elif isinstance(layer, sk.Dense):
            spec.append({
                "kind": "dense", "in_features": layer.in_features,
                "out_features": layer.out_features, "bias": layer.bias is not None,
            })
        else:
            raise ValueError(
                f"the reference frameworks mirror only {KINDS}. Received: layer {i} = {layer!r}"
            )
    return spec


def build(spec: list[dict], dtype="float32") -> sk.Sequential:
    """A skylark Sequential with the architecture of `spec` (torch-default init, seed 0)."""
    layers = []
    for i, s in enumerate(spec):
        kind = s.get("kind")
        if kind == "conv2d":
            pad = s["padding"] if isinstance(s["padding"], str) else tuple(s["padding"])
            layers.append(sk.Conv2D(
                s["in_channels"], s["out_channels"], tuple(s["kernel_size"]),
                tuple(s["stride"]), pad, bias=s["bias"], dtype=dtype, seed=i,
            ))
        elif kind == "maxpool2d":
            pad = s["padding"] if isinstance(s["padding"], str) else tuple(s["padding"])
            layers.append(sk.MaxPool2D(tuple(s["kernel_size"]), tuple(s["stride"]), pad))
        elif kind == "relu":
            layers.append(sk.ReLU())
        elif kind == "flatten":
            layers.append(sk.Flatten())
        elif kind == "dense":
            layers.append(sk.Dense(
                s["in_features"], s["out_features"], bias=s["bias"], dtype=dtype, seed=i
            ))
        else:
            raise ValueError(f"spec layer {i}: kind must be one of {KINDS}. Received: {s!r}")
    return sk.Sequential(*layers)


def shapes(spec: list[dict], input_shape) -> list[tuple[int, ...]]:
    """Per-sample output shape of every layer for an input (C, H, W): (C, H, W) or (F,).

    Validates the stack the way skylark's forward would: conv/pool need a (C, H, W) map, dense
    needs a flat vector (a Flatten before it), and every size must fit.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape is (C, H, W). Received: input_shape={input_shape!r}")
    model = build(spec)
    out, shape = [], input_shape
    for i, (s, layer) in enumerate(zip(spec, model, strict=True)):
        kind = s["kind"]
        if kind in ("conv2d", "maxpool2d") and len(shape) != 3:
            raise ValueError(f"spec layer {i} ({kind}) needs a (C, H, W) input. Received: {shape}")
        if kind == "dense" and len(shape) != 1:
            raise ValueError(
                f"spec layer {i} (dense) needs a flat input: put a flatten before it. "
                f"Received: input shape {shape}"
            )
        if kind == "conv2d" and shape[0] != s["in_channels"]:
            raise ValueError(
                f"spec layer {i} (conv2d) expects {s['in_channels']} channels. "
                f"Received: input shape {shape}"
            )
        shape = tuple(int(d) for d in layer.output_shape(shape))
        out.append(shape)
    return out


def flat_sources(spec: list[dict], input_shape) -> list[tuple[int, int, int] | None]:
    """For each layer, the (C, H, W) map its 2-D output was flattened from, or None.

    A flat tensor keeps the flatten order (CHW in skylark/torch, HWC in Keras/TF) until a dense
    mixes it: Flatten -> ReLU -> Dense still carries the map's order into the Dense rows.
    """
    shp = shapes(spec, input_shape)
    prev, src, out = tuple(input_shape), None, []
    for s, shape in zip(spec, shp, strict=True):
        if s["kind"] == "flatten" and len(prev) == 3:
            src = prev
        elif s["kind"] == "dense" or len(shape) == 3:
            src = None
        out.append(src)
        prev = shape
    return out


def dense_input_maps(spec: list[dict], input_shape) -> dict[int, tuple[int, int, int]]:
    """Layer index -> (C, H, W) of the map a dense layer's input rows were flattened from."""
    srcs = flat_sources(spec, input_shape)
    return {
        i: srcs[i - 1]
        for i, s in enumerate(spec)
        if s["kind"] == "dense" and i > 0 and srcs[i - 1] is not None
    }


def param_shapes(spec: list[dict]) -> dict[str, tuple[int, ...]]:
    """Skylark parameter names -> shapes (OIHW conv weights, (out, in) dense weights)."""
    out = {}
    for i, s in enumerate(spec):
        if s["kind"] == "conv2d":
            out[f"{i}.weight"] = (s["out_channels"], s["in_channels"], *s["kernel_size"])
        elif s["kind"] == "dense":
            out[f"{i}.weight"] = (s["out_features"], s["in_features"])
        else:
            continue
        if s["bias"]:
            out[f"{i}.bias"] = (s["out_channels"] if s["kind"] == "conv2d" else s["out_features"],)
    return out


def resolved_pads(spec: list[dict], input_shape) -> list[tuple[int, int, int, int] | None]:
    """(top, bottom, left, right) pads of each conv/pool layer for this input size, else None."""
    from skylark.layers.padding import resolve_pads

    prev, out = tuple(input_shape), []
    for s, shape in zip(spec, shapes(spec, input_shape), strict=True):
        if s["kind"] in ("conv2d", "maxpool2d"):
            pad = s["padding"] if isinstance(s["padding"], str) else tuple(s["padding"])
            out.append(resolve_pads(pad, prev[1:], tuple(s["kernel_size"]), tuple(s["stride"])))
        else:
            out.append(None)
        prev = shape
    return out


def skylark_spec(input_shape=(1, 28, 28)) -> list[dict]:
    """The Skylark net's spec for this input shape."""
    return describe(sk.skylark_cnn(input_shape=tuple(input_shape)))


__all__ = [
    "KINDS", "build", "dense_input_maps", "describe", "flat_sources", "param_shapes",
    "resolved_pads", "shapes", "skylark_spec",
]
