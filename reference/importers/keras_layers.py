"""One converter per Keras layer class: the skylark spec node(s) a Keras layer becomes.

Each converter gets the walk (`Walk`: where nodes, Keras weights, notes and unsupported items
go), the layer, its config, the skylark names of its inputs and the per-sample Keras shapes of
its inputs and output (NHWC without the batch: (H, W, C) or (F,)). It returns the name of the
node that holds the layer's output. Weights are collected in Keras' layout under Keras' names
("{node}.kernel", "{node}.moving_variance"); reference.transfer.from_keras converts them all at
once, so every permutation stays in reference.transfer.
"""

from __future__ import annotations

import numpy as np

from ..transfer import depthwise_kernel_from_keras

# Keras activation name -> skylark spec entry (None: the identity). Keras 3's hard_sigmoid is
# relu6(x + 3) / 6, torch's Hardsigmoid (Keras 2's was 0.2 x + 0.5: not accepted here because
# Keras 3 cannot load it under this name); "gelu" is the exact erf form unless approximate.
ACTIVATIONS = {
    "linear": None,
    "relu": {"kind": "relu"},
    "relu6": {"kind": "relu6"},
    "sigmoid": {"kind": "sigmoid"},
    "tanh": {"kind": "tanh"},
    "swish": {"kind": "silu"},
    "silu": {"kind": "silu"},
    "hard_swish": {"kind": "hardswish"},
    "hard_silu": {"kind": "hardswish"},
    "hard_sigmoid": {"kind": "hardsigmoid"},
    "gelu": {"kind": "gelu", "approximate": "none"},
    "leaky_relu": {"kind": "leaky_relu", "negative_slope": 0.2},  # keras.activations' default
}


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(d) for d in v]


def _act_name(act) -> str:
    """The name of a serialized Keras activation ("relu", or a registered function's dict)."""
    if isinstance(act, str):
        return act
    if isinstance(act, dict):
        return str(act.get("config", act.get("class_name", act)))
    return repr(act)


def activation(w, layer, ins, act, out_name) -> str:
    """The node for activation `act` after node `ins` (the layer's own `activation=`)."""
    name = _act_name(act)
    if name == "softmax":
        if w.is_final(layer):
            w.notes.append(f"the final softmax of {layer.name!r} ({type(layer).__name__}) is "
                           f"not in the graph: skylark outputs its logits (softmax of them is "
                           f"Keras' output; the loss applies it)")
            w.dropped_softmax = True
            return ins
        w.unsupported.append(f"activation='softmax' of {type(layer).__name__} at "
                             f"{layer.name!r} (only a final softmax is allowed)")
        return ins
    if name not in ACTIVATIONS:
        w.unsupported.append(f"activation={name!r} of {type(layer).__name__} at {layer.name!r}")
        return ins
    entry = ACTIVATIONS[name]
    return ins if entry is None else w.add(dict(entry), layer, [ins], out_name)


def _needs(w, layer, cfg, **expected) -> bool:
    """Record every config attribute that is not what skylark can express; True when none."""
    ok = True
    for key, allowed in expected.items():
        value = cfg.get(key)
        if value not in allowed:
            w.unsupported.append(f"{type(layer).__name__}.{key}={value!r} at {layer.name!r}")
            ok = False
    return ok


_LAST = {"data_format": ("channels_last", None)}


def conv2d(w, layer, cfg, ins, in_shapes, out_shape):
    if not _needs(w, layer, cfg, padding=("valid", "same"), **_LAST):
        return ins[0]
    c = int(in_shapes[0][-1])
    n = w.add({"kind": "conv2d", "in_channels": c, "out_channels": int(cfg["filters"]),
               "kernel_size": _pair(cfg["kernel_size"]), "stride": _pair(cfg["strides"]),
               "padding": cfg["padding"], "dilation": _pair(cfg["dilation_rate"]),
               "groups": int(cfg.get("groups", 1)), "bias": bool(cfg["use_bias"])},
              layer, ins)
    w.weights(n, layer, kernel=layer.kernel, bias=layer.bias if cfg["use_bias"] else None)
    return activation(w, layer, n, cfg["activation"], f"{n}_act")


def depthwise_conv2d(w, layer, cfg, ins, in_shapes, out_shape):
    if not _needs(w, layer, cfg, padding=("valid", "same"), **_LAST):
        return ins[0]
    c, m = int(in_shapes[0][-1]), int(cfg["depth_multiplier"])
    n = w.add({"kind": "conv2d", "in_channels": c, "out_channels": c * m,
               "kernel_size": _pair(cfg["kernel_size"]), "stride": _pair(cfg["strides"]),
               "padding": cfg["padding"], "dilation": _pair(cfg["dilation_rate"]),
               "groups": c, "bias": bool(cfg["use_bias"])}, layer, ins)
    kernel = depthwise_kernel_from_keras(w.array(layer.kernel))  # torch's grouped order
    w.weights(n, layer, kernel=kernel, bias=layer.bias if cfg["use_bias"] else None)
    return activation(w, layer, n, cfg["activation"], f"{n}_act")


def dense(w, layer, cfg, ins, in_shapes, out_shape):
    if len(in_shapes[0]) != 1:
        w.unsupported.append(f"Dense on a {len(in_shapes[0])}-D input at {layer.name!r} "
                             f"(skylark's dense takes a flat input: put a Flatten before it)")
        return ins[0]
    n = w.add({"kind": "dense", "in_features": int(in_shapes[0][0]),
               "out_features": int(cfg["units"]), "bias": bool(cfg["use_bias"])}, layer, ins)
    w.weights(n, layer, kernel=layer.kernel, bias=layer.bias if cfg["use_bias"] else None)
    return activation(w, layer, n, cfg["activation"], f"{n}_act")


def batchnorm(w, layer, cfg, ins, in_shapes, out_shape):
    axis = cfg["axis"]
    axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
    if len(in_shapes[0]) != 3 or axis not in (-1, 3):
        w.unsupported.append(f"BatchNormalization.axis={cfg['axis']!r} on a "
                             f"{len(in_shapes[0]) + 1}-D input at {layer.name!r} (skylark's "
                             f"batchnorm2d normalizes the channels of an image batch)")
        return ins[0]
    if cfg.get("renorm") or cfg.get("synchronized"):
        w.unsupported.append(f"BatchNormalization.renorm/synchronized at {layer.name!r}")
        return ins[0]
    c = int(in_shapes[0][-1])
    # Keras' momentum is the weight of the OLD running value: torch's is 1 - it (12 digits:
    # 1 - 0.99 is 0.010000000000000009 in binary, the 0.01 the author meant in decimal)
    momentum = float(f"{1 - float(cfg['momentum']):.12g}")
    n = w.add({"kind": "batchnorm2d", "num_features": c, "eps": float(cfg["epsilon"]),
               "momentum": momentum}, layer, ins)
    dtype = w.array(layer.moving_mean).dtype
    gamma = layer.gamma if cfg["scale"] else np.ones(c, dtype)
    beta = layer.beta if cfg["center"] else np.zeros(c, dtype)
    for flag, what, value in (("scale", "gamma", 1), ("center", "beta", 0)):
        if not cfg[flag]:
            w.notes.append(f"{layer.name!r}: BatchNormalization({flag}=False) has no {what}; "
                           f"skylark's batchnorm2d has one, set to {value} (trainable there)")
    w.weights(n, layer, gamma=gamma, beta=beta, moving_mean=layer.moving_mean,
              moving_variance=layer.moving_variance)
    w.batchnorm_seen = True
    return n


def relu(w, layer, cfg, ins, in_shapes, out_shape):
    top, slope, thr = cfg.get("max_value"), float(cfg.get("negative_slope") or 0), \
        float(cfg.get("threshold") or 0)
    if thr != 0:
        w.unsupported.append(f"ReLU.threshold={thr!r} at {layer.name!r}")
        return ins[0]
    if top is None:
        entry = {"kind": "leaky_relu", "negative_slope": slope} if slope else {"kind": "relu"}
    elif float(top) == 6.0 and slope == 0:
        entry = {"kind": "relu6"}
    else:
        w.unsupported.append(f"ReLU(max_value={top!r}, negative_slope={slope!r}) at "
                             f"{layer.name!r} (skylark has relu, relu6 and leaky_relu)")
        return ins[0]
    return w.add(entry, layer, ins)


def leaky_relu(w, layer, cfg, ins, in_shapes, out_shape):
    return w.add({"kind": "leaky_relu", "negative_slope": float(cfg["negative_slope"])},
                 layer, ins)


def activation_layer(w, layer, cfg, ins, in_shapes, out_shape):
    return activation(w, layer, ins[0], cfg["activation"], None)


def softmax_layer(w, layer, cfg, ins, in_shapes, out_shape):
    return activation(w, layer, ins[0], "softmax", None)


def _pool(w, layer, cfg, ins, in_shapes, kind):
    if not _needs(w, layer, cfg, padding=("valid", "same"), **_LAST):
        return ins[0]
    k = _pair(cfg["pool_size"])
    stride = _pair(cfg["strides"]) if cfg.get("strides") is not None else k
    entry = {"kind": kind, "kernel_size": k, "stride": stride, "padding": cfg["padding"]}
    if kind == "maxpool2d":
        entry.update(dilation=[1, 1], ceil_mode=False)
    else:  # Keras' "same" averages the real cells only: skylark's "same" does the same
        entry["count_include_pad"] = None
    return w.add(entry, layer, ins)


def maxpool(w, layer, cfg, ins, in_shapes, out_shape):
    return _pool(w, layer, cfg, ins, in_shapes, "maxpool2d")


def avgpool(w, layer, cfg, ins, in_shapes, out_shape):
    return _pool(w, layer, cfg, ins, in_shapes, "avgpool2d")


def global_avgpool(w, layer, cfg, ins, in_shapes, out_shape):
    if not _needs(w, layer, cfg, **_LAST):
        return ins[0]
    if cfg.get("keepdims"):  # (N, 1, 1, C): skylark's (N, C, 1, 1) adaptive pool
        return w.add({"kind": "adaptiveavgpool2d", "output_size": [1, 1]}, layer, ins)
    return w.add({"kind": "globalavgpool2d"}, layer, ins)


def flatten(w, layer, cfg, ins, in_shapes, out_shape):
    if not _needs(w, layer, cfg, **_LAST):
        return ins[0]
    if len(in_shapes[0]) == 1:
        return ins[0]  # already flat: nothing to do
    return w.add({"kind": "flatten"}, layer, ins)


def dropout(w, layer, cfg, ins, in_shapes, out_shape):
    rate, noise = float(cfg["rate"]), cfg.get("noise_shape")
    if noise is None:
        return w.add({"kind": "dropout", "p": rate}, layer, ins)
    if list(noise) == [None, 1, 1, 1] and len(in_shapes[0]) == 3:
        # one draw per sample: the whole residual branch dropped (stochastic depth)
        return w.add({"kind": "stochasticdepth", "p": rate, "mode": "row"}, layer, ins)
    w.unsupported.append(f"Dropout.noise_shape={tuple(noise)!r} at {layer.name!r}")
    return ins[0]


def _merge(kind):
    def convert(w, layer, cfg, ins, in_shapes, out_shape):
        if len(set(map(tuple, in_shapes))) > 1 and kind != "multiply":
            w.unsupported.append(f"{type(layer).__name__} of broadcast shapes "
                                 f"{[tuple(s) for s in in_shapes]} at {layer.name!r}")
            return ins[0]
        if kind == "multiply":  # skylark's Multiply: [x, gate], the gate the broadcast one
            order = sorted(range(len(ins)), key=lambda i: -int(np.prod(in_shapes[i])))
            ins = [ins[i] for i in order]
        return w.add({"kind": kind}, layer, ins)

    return convert


def concatenate(w, layer, cfg, ins, in_shapes, out_shape):
    rank = len(in_shapes[0]) + 1
    if cfg["axis"] not in (-1, rank - 1):  # the channels (features): skylark's axis 1
        w.unsupported.append(f"Concatenate.axis={cfg['axis']!r} at {layer.name!r} "
                             f"(only the channel axis, -1)")
        return ins[0]
    return w.add({"kind": "concat"}, layer, ins)


def reshape(w, layer, cfg, ins, in_shapes, out_shape):
    target = tuple(int(d) for d in cfg["target_shape"])
    if target == tuple(in_shapes[0]):
        return ins[0]
    src = w.node(ins[0])
    if (src is not None and src["kind"] == "globalavgpool2d" and len(target) == 3
            and target[:2] == (1, 1) and w.consumers(ins[0]) == 1):
        # the squeeze-excite idiom: GlobalAveragePooling2D then Reshape((1, 1, C)) is the
        # pool with keepdims, skylark's (N, C, 1, 1) adaptive pool
        src.update(kind="adaptiveavgpool2d", output_size=[1, 1])
        w.origin[ins[0]] += f" + {layer.name}"
        return ins[0]
    w.unsupported.append(f"Reshape(target_shape={target!r}) at {layer.name!r} (only "
                         f"GlobalAveragePooling2D -> Reshape((1, 1, C)), the squeeze-excite "
                         f"idiom)")
    return ins[0]


def zeropad(w, layer, cfg, ins, in_shapes, out_shape):
    if not _needs(w, layer, cfg, **_LAST):
        return ins[0]
    (t, b), (l, r) = (_pair(p) for p in cfg["padding"])
    if not any((t, b, l, r)):
        return ins[0]  # padding by 0: the identity
    return w.add({"kind": "zeropad2d", "padding": [l, r, t, b]}, layer, ins)


def _channels(v, c):
    """A scalar stays a float; a per-channel array becomes a list of C floats."""
    a = np.asarray(v, np.float64)
    if a.size == 1:
        return float(a.reshape(())) + 0.0  # + 0.0: -0.0 (a zero mean negated) as 0.0
    if a.size != c:
        raise ValueError(a.shape)
    return [float(x) + 0.0 for x in a.reshape(-1)]


def rescaling(w, layer, cfg, ins, in_shapes, out_shape):
    c = int(in_shapes[0][-1])
    try:
        scale, offset = _channels(cfg["scale"], c), _channels(cfg["offset"], c)
    except ValueError:
        w.unsupported.append(f"Rescaling(scale={cfg['scale']!r}, offset={cfg['offset']!r}) "
                             f"at {layer.name!r} (a scalar or one value per channel)")
        return ins[0]
    return w.add({"kind": "rescaling", "scale": scale, "offset": offset}, layer, ins)


def normalization(w, layer, cfg, ins, in_shapes, out_shape):
    import keras

    c = int(in_shapes[0][-1])
    axis = cfg.get("axis")
    axis = tuple(axis) if isinstance(axis, list | tuple) else (axis,)
    if cfg.get("invert") or axis not in ((-1,), (len(in_shapes[0]),)):
        w.unsupported.append(f"Normalization(axis={cfg.get('axis')!r}, invert="
                             f"{cfg.get('invert')!r}) at {layer.name!r}")
        return ins[0]
    mean = np.asarray(w.array(layer.mean), np.float64)
    var = np.asarray(w.array(layer.variance), np.float64)
    # Keras: (x - mean) / max(sqrt(var), epsilon); skylark: x * scale + offset
    scale = 1 / np.maximum(np.sqrt(var), keras.backend.epsilon())
    w.notes.append(f"{layer.name!r}: Normalization (x - mean) / std became x * (1/std) + "
                   f"(-mean/std), computed in float64: the same map, rounded differently "
                   f"(float32: a few ulps of |x|/std)")
    return w.add({"kind": "rescaling", "scale": _channels(scale, c),
                  "offset": _channels(-mean * scale, c)}, layer, ins)


def identity(w, layer, cfg, ins, in_shapes, out_shape):
    return w.add({"kind": "identity"}, layer, ins)


CONVERTERS = {
    "Conv2D": conv2d, "DepthwiseConv2D": depthwise_conv2d, "Dense": dense,
    "BatchNormalization": batchnorm, "ReLU": relu, "LeakyReLU": leaky_relu,
    "Activation": activation_layer, "Softmax": softmax_layer,
    "MaxPooling2D": maxpool, "AveragePooling2D": avgpool,
    "GlobalAveragePooling2D": global_avgpool, "Flatten": flatten, "Dropout": dropout,
    "Add": _merge("add"), "Multiply": _merge("multiply"), "Concatenate": concatenate,
    "Reshape": reshape, "ZeroPadding2D": zeropad, "Rescaling": rescaling,
    "Normalization": normalization, "Identity": identity,
}

__all__ = ["ACTIVATIONS", "CONVERTERS", "activation"]
