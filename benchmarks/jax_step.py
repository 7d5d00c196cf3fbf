"""A self-contained raw-JAX training step and inference for the benchmark: the whole step
(forward, mean softmax cross-entropy, grad, SGD with torch's momentum rule, BatchNorm's running
statistics) in ONE `jax.jit`, so XLA fuses it, as a speed-minded JAX user would write it.

Built from a skylark model (its layers' configs and weights, NCHW / OIHW as skylark), for the
layer kinds of the built-in models; another kind raises NotImplementedError naming it (the
benchmark then reports the row as unavailable).

    train, infer = jax_case(net, x, y, masks, lr, momentum)   # x NCHW float32, y int
"""

from __future__ import annotations

import numpy as np


def jax_case(net, x: np.ndarray, y: np.ndarray, masks: dict, lr: float, momentum: float):
    """(train, infer) callables that block until the result is ready (JAX is asynchronous)."""
    import jax
    import jax.numpy as jnp

    forward = _graph_forward(net, x.shape[1:], masks) if not _is_chain(net) else \
        _chain_forward(net, x.shape[1:], masks)
    params = {k: jnp.asarray(v) for k, v in net.params().items()}
    stats = {k: jnp.asarray(v) for k, v in net.buffers().items()}
    vel = {k: jnp.zeros_like(v) for k, v in params.items()}
    xj, yj = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

    def loss_fn(p, s, xb, yb):
        logits, new_s = forward(p, s, xb, True)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1)), new_s

    @jax.jit
    def step(p, v, s, xb, yb):
        (loss, new_s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s, xb, yb)
        # torch's rule: v = mu*v + g (v = g at first, as v starts at 0); p -= lr*v
        v = {k: momentum * v[k] + g[k] for k in p}
        return {k: p[k] - lr * v[k] for k in p}, v, new_s, loss

    predict = jax.jit(lambda p, s, xb: forward(p, s, xb, False)[0])
    state = [params, vel, stats]

    def train():
        state[0], state[1], state[2], loss = step(*state, xj, yj)
        return loss.block_until_ready()

    def infer():
        return predict(state[0], state[2], xj).block_until_ready()

    return train, infer


def _is_chain(net) -> bool:
    """A Sequential (every node reads the one before) of the kinds `_plan` knows."""
    import skylark as sk

    return isinstance(net, sk.Sequential) and all(layer.kind in _PLANNED for layer in net)


def _chain_forward(net, input_shape, masks):
    layers = _plan(net, input_shape, masks)
    return lambda p, s, xb, training: _forward(layers, p, s, xb, training)


def _graph_forward(net, input_shape, masks):
    """A graph (or a kind `_plan` does not write out): the reference's raw-JAX forward, each
    kind's jax builder walked over the graph (reference.runners.jax_ref), traced into the same
    jit."""
    import jax.numpy as jnp

    from reference.runners.jax_ref import JaxRun, JaxRunner
    from reference.spec import describe

    runner = JaxRunner()
    runner.setup(describe(net), net.state(), "float32", tuple(input_shape))
    masks = {i: jnp.asarray(m) for i, m in masks.items()}

    def forward(p, s, xb, training):
        run = JaxRun(training, masks)
        return runner._forward(xb, p, s, run)[-1], {**s, **run.new_state}

    return forward


_PLANNED = ("conv2d", "maxpool2d", "avgpool2d", "batchnorm2d", "dropout", "relu", "tanh",
            "flatten", "dense", "globalavgpool2d")


def _plan(net, input_shape, masks) -> list[tuple]:
    """(index, kind, static arguments) per layer, with every pad resolved for its input size."""
    shape, out = tuple(input_shape), []
    for i, layer in enumerate(net):
        kind, hw = layer.kind, shape[1:]
        if kind == "conv2d":
            t, b, l, r = layer.pads(hw)
            args = dict(stride=layer.stride, pads=((t, b), (l, r)), dilation=layer.dilation,
                        groups=layer.groups)
        elif kind in ("maxpool2d", "avgpool2d"):
            t, b, l, r = layer.pads(hw)
            args = dict(k=layer.kernel_size, s=layer.stride, pads=((0, 0), (0, 0), (t, b), (l, r)),
                        dilation=getattr(layer, "dilation", (1, 1)))
            if kind == "avgpool2d":
                args["divisor"] = np.asarray(layer.divisor(hw), np.float32)
        elif kind == "batchnorm2d":
            args = dict(eps=layer.eps, momentum=layer.momentum)
        elif kind == "dropout":
            keep = 1 - layer.p
            args = dict(scale=None if i not in masks else
                        np.asarray(masks[i], np.float32) / np.float32(keep))
        elif kind in ("relu", "tanh", "flatten", "dense", "globalavgpool2d"):
            args = {}
        else:
            raise NotImplementedError(f"no JAX step for layer kind {kind!r}")
        out.append((i, kind, args))
        shape = layer.output_shape(shape)
    return out


def _forward(layers, p, s, x, training: bool):
    """Logits and the updated running statistics (the same dict outside training)."""
    new_s = dict(s)
    for i, kind, a in layers:
        if kind == "batchnorm2d":
            x = _batchnorm(x, p, s, new_s, f"{i}.", a, training)
        elif kind == "dropout":
            x = x if not training or a["scale"] is None else x * a["scale"]
        else:
            x = _LAYERS[kind](x, p, f"{i}.", a)
    return x, new_s


def _conv(x, p, pre, a):
    from jax import lax

    y = lax.conv_general_dilated(x, p[pre + "weight"], a["stride"], a["pads"],
                                 rhs_dilation=a["dilation"], feature_group_count=a["groups"],
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y if pre + "bias" not in p else y + p[pre + "bias"][:, None, None]


def _maxpool(x, p, pre, a):
    import jax.numpy as jnp
    from jax import lax

    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, *a["k"]), (1, 1, *a["s"]), a["pads"],
                             window_dilation=(1, 1, *a["dilation"]))


def _avgpool(x, p, pre, a):
    from jax import lax

    total = lax.reduce_window(x, 0.0, lax.add, (1, 1, *a["k"]), (1, 1, *a["s"]), a["pads"])
    return total / a["divisor"]


def _batchnorm(x, p, s, new_s, pre, a, training: bool):
    import jax.numpy as jnp

    if training:
        n = x.shape[0] * x.shape[2] * x.shape[3]
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        m = a["momentum"]
        new_s[pre + "running_mean"] = (1 - m) * s[pre + "running_mean"] + m * mean
        new_s[pre + "running_var"] = (1 - m) * s[pre + "running_var"] + m * var * (n / (n - 1))
    else:
        mean, var = s[pre + "running_mean"], s[pre + "running_var"]
    xhat = (x - mean[:, None, None]) / jnp.sqrt(var + a["eps"])[:, None, None]
    return xhat * p[pre + "weight"][:, None, None] + p[pre + "bias"][:, None, None]


def _dense(x, p, pre, a):
    y = x @ p[pre + "weight"].T
    return y if pre + "bias" not in p else y + p[pre + "bias"]


def _relu(x, p, pre, a):
    import jax.numpy as jnp

    return jnp.maximum(x, 0)


def _tanh(x, p, pre, a):
    import jax.numpy as jnp

    return jnp.tanh(x)


_LAYERS = {
    "conv2d": _conv, "maxpool2d": _maxpool, "avgpool2d": _avgpool, "dense": _dense,
    "relu": _relu, "tanh": _tanh, "flatten": lambda x, p, pre, a: x.reshape(x.shape[0], -1),
    "globalavgpool2d": lambda x, p, pre, a: x.mean(axis=(2, 3)),
}
