"""One (train, infer) pair of closures per framework, on one fixed batch of one model.

    train, infer = make_cases("torch-compile", "skylark", x, y, threads=1)

What one "training step" is, in every framework: forward, mean softmax cross-entropy, backward,
SGD update (lr 0.01, momentum 0.9, torch's rule), on a fixed (N, 1, 28, 28) float32 batch. Each
framework runs its own native path, with no numpy <-> tensor conversion inside the timed call:
  numpy          skylark: forward, softmax_cross_entropy, backward(input_grad=False), SGD.step
  torch          the reference nn.Sequential, F.cross_entropy, torch.optim.SGD (eager)
  torch-compile  the same, model and optimizer step under torch.compile (inductor, the default
                 backend); compiled afresh per batch size (static shapes)
  tf             the raw-TF reference (tf.nn ops, GradientTape) inside one tf.function
  keras          the reference keras.Sequential, compile(SGD) + train_on_batch / predict_on_batch
  jax            a raw-JAX step, forward + loss + grad + SGD in one jax.jit (jax_step.py)
  oracle         tests/oracle.py (per-pixel Python loops, as tutorials write them), Skylark net
The closures of asynchronous frameworks (jax) block until their result is ready.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LR, MOMENTUM, SEED = 0.01, 0.9, 0
INPUT_SHAPE = (1, 28, 28)
PEERS = ("torch", "torch-compile", "tf", "keras", "jax")  # what a user could pick instead


def bench_model(model: str):
    """The model being timed, freshly initialised, float32."""
    from skylark.models import build_model

    return build_model(model, INPUT_SHAPE, num_classes=10, seed=SEED)


def make_cases(name: str, model: str, x, y, threads: int):
    """(train, infer) callables for framework `name` on batch (x NCHW float32, y int64).
    Training runs in training mode with one fixed set of dropout masks (the same for every
    framework); inference in evaluation mode."""
    from reference.inputs import dropout_masks
    from reference.spec import describe

    net = bench_model(model)
    masks = dropout_masks(describe(net), INPUT_SHAPE, len(x), SEED)
    if name == "numpy":
        return _numpy_case(net, x, y, masks)
    if name == "oracle":
        return _oracle_case(net, x, y)
    if name == "jax":
        from .jax_step import jax_case

        return jax_case(net, x, y, masks, LR, MOMENTUM)
    from reference.runners.registry import get_runner

    runner = get_runner("torch" if name == "torch-compile" else name)  # FrameworkUnavailable
    runner.setup(describe(net), net.state(), "float32", INPUT_SHAPE)
    return _CASES[name](runner, x, y, threads, masks)


def _numpy_case(net, x, y, masks, opt=None):
    """`opt`: the optimizer over `net` (benchmarks/optimizers.py's Adam); SGD by default."""
    import skylark as sk

    opt = opt if opt is not None else sk.SGD(net, LR, MOMENTUM)

    def train():
        net.train()
        for i, m in masks.items():
            net[i].use_mask(m)
        _, d = sk.softmax_cross_entropy(net.forward(x), y)
        opt.zero_grad()
        net.backward(d, input_grad=False)  # the data needs no gradient (as in torch)
        opt.step()

    return train, lambda: net.eval().forward(x)


def _torch_case(runner, x, y, threads, masks, make_opt=None):
    """`make_opt(parameters)`: the torch.optim optimizer (benchmarks/optimizers.py's Adam);
    SGD by default."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    model = runner.model
    runner._set_mode(True, masks)  # the masks stay on the dropout modules
    topt = (make_opt or (lambda ps: torch.optim.SGD(ps, lr=LR, momentum=MOMENTUM)))(
        model.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def train():
        model.train()
        topt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xt), yt).backward()
        topt.step()

    train.optimizer = topt  # for a caller timing topt.step() alone

    def infer():
        model.eval()
        with torch.inference_mode():
            return model(xt)

    return train, infer


def _tf_case(runner, x, y, threads, masks):
    import tensorflow as tf

    from reference.runners.tf_ref import TFRun
    from reference.transfer import activation_to_keras

    tvars = [runner.vars[k] for k in runner.trainable]
    vel = [tf.Variable(tf.zeros_like(v)) for v in tvars]
    xt, yt = tf.constant(activation_to_keras(x)), tf.constant(y)  # NHWC once, untimed
    run = runner._run(True, masks, len(x))

    @tf.function(autograph=False)  # the graph walk is plain Python (reference.formats)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = runner._loss(runner._forward(xb, run)[-1], yb)
        for v, m, g in zip(tvars, vel, tape.gradient(loss, tvars), strict=True):
            m.assign(MOMENTUM * m + g)  # torch's rule: v = mu*v + g (v = g at first)
            v.assign_sub(LR * m)
        return loss

    predict = tf.function(lambda xb: runner._forward(xb, TFRun(training=False))[-1],
                          autograph=False)
    return (lambda: step(xt, yt)), (lambda: predict(xt))


def _keras_case(runner, x, y, threads, masks):
    import keras

    from reference.transfer import activation_to_keras

    xk = activation_to_keras(x)  # NCHW -> NHWC once, outside the timed calls
    for i, m in masks.items():  # the masks stay on the dropout layers
        runner.groups[i][-1].mask = activation_to_keras(m, runner.geometry[i].in_flat_source)
    model = runner.model
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=MOMENTUM),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return (lambda: model.train_on_batch(xk, y)), (lambda: model.predict_on_batch(xk))


def _torch_compile_case(runner, x, y, threads, masks):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch._dynamo.reset()  # compile afresh for this batch size: static shapes, as users get
    model = runner.model
    runner._set_mode(True, masks)
    topt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    fwd, opt_step = torch.compile(model, dynamic=False), torch.compile(topt.step)
    infer_model = torch.compile(model, dynamic=False)

    def train():
        model.train()
        topt.zero_grad(set_to_none=True)
        F.cross_entropy(fwd(xt), yt).backward()
        opt_step()

    def infer():
        model.eval()
        with torch.inference_mode():
            return infer_model(xt)

    return train, infer


_CASES = {"torch": _torch_case, "torch-compile": _torch_compile_case, "tf": _tf_case,
          "keras": _keras_case}


def _oracle_case(net, x, y):
    """The tutorials' loops (tests/oracle.py) for conv and pool, a matmul for the dense layer."""
    import numpy as np

    import skylark as sk

    sys.path.insert(0, str(ROOT / "tests"))
    import oracle

    p = {k: v.copy() for k, v in net.params().items()}
    vel = {k: np.zeros_like(v) for k, v in p.items()}
    nopad, one, two = (0, 0, 0, 0), (1, 1), (2, 2)

    def forward():
        fmap = oracle.conv_forward(x, p["0.weight"], None, one, nopad)
        pooled, _ = oracle.maxpool_forward(fmap, two, two, nopad)
        flat = pooled.reshape(len(x), -1)
        return fmap, pooled, flat, flat @ p["3.weight"].T + p["3.bias"]

    def train():
        fmap, pooled, flat, logits = forward()
        _, dz = sk.softmax_cross_entropy(logits, y)
        dpool = (dz @ p["3.weight"]).reshape(pooled.shape)
        dfmap = oracle.maxpool_backward(dpool, fmap, two, two, nopad)
        _, dw, _ = oracle.conv_backward(dfmap, x, p["0.weight"], one, nopad)
        grads = {"0.weight": dw, "3.weight": dz.T @ flat, "3.bias": dz.sum(axis=0)}
        for k, g in grads.items():
            vel[k] = MOMENTUM * vel[k] + g
            p[k] -= np.float32(LR) * vel[k]

    return train, lambda: forward()[-1]


