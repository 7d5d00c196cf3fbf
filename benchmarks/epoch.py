"""Seconds per Fashion-MNIST epoch at batch 64, numpy and torch eager: real shuffled batches
(slicing included), the two taking turns every CHUNK batches, extrapolated to 60,000 images."""

from __future__ import annotations

import time

from .cases import INPUT_SHAPE, LR, MOMENTUM, SEED, bench_model

EPOCH_BATCH = 64
CHUNK = 10  # numpy and torch alternate every CHUNK batches


def epoch_seconds(model: str, n_batches: int, threads: int, log) -> dict:
    """Seconds per 60,000-image epoch at batch 64 for numpy and torch: `n_batches` batches of
    the real shuffled epoch (slicing included), alternating every CHUNK, extrapolated."""
    from skylark.data import batches, load_dataset

    try:
        data = load_dataset("fashion-mnist")
    except Exception as e:
        return {"missing": f"{type(e).__name__}: {e}"}
    order = batches(len(data.x_train), EPOCH_BATCH, SEED, 0)
    n_batches = min(n_batches, len(order))
    # fresh models fed the real batches (the closures of make_cases hold one fixed batch)
    net = bench_model(model)
    runners, steps = {"numpy": _numpy_epoch_step(net, data)}, {}
    try:
        import torch.nn.functional  # noqa: F401
    except ImportError as e:
        steps["torch"] = {"missing": f"{type(e).__name__}: {e}"}
    else:
        runners["torch"] = _torch_epoch_step(net, data, threads)
    spent = _time_alternating(runners, order, n_batches)
    images = sum(len(i) for i in order[:n_batches])
    for name, s in spent.items():
        steps[name] = {"seconds_per_epoch": s * len(data.x_train) / images,
                       "measured_images": images}
    log(f"  epoch: {n_batches} batches of {EPOCH_BATCH} timed per framework, extrapolated")
    return steps


def _numpy_epoch_step(net, data):
    """A skylark training step on the batch of indices `idx` of the training set."""
    import skylark as sk

    opt = sk.SGD(net, LR, MOMENTUM)

    masks = _epoch_masks(net)

    def np_step(idx):
        for i, m in masks(len(idx)).items():
            net[i].use_mask(m)
        _, d = sk.softmax_cross_entropy(net.forward(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        net.backward(d, input_grad=False)
        opt.step()

    return np_step


def _torch_epoch_step(net, data, threads: int):
    """A torch training step, on a model holding `net`'s initial weights, on the batch `idx`."""
    import torch
    import torch.nn.functional as F

    from reference.runners.registry import get_runner
    from reference.spec import describe

    torch.set_num_threads(threads)
    r = get_runner("torch")
    r.setup(describe(net), net.state(), "float32", INPUT_SHAPE)
    tm, topt = r.model, torch.optim.SGD(r.model.parameters(), lr=LR, momentum=MOMENTUM)
    masks = _epoch_masks(net)

    def torch_step(idx):
        r._set_mode(True, masks(len(idx)))
        xb = torch.from_numpy(data.x_train[idx])  # zero-copy: the slice is the only copy
        yb = torch.from_numpy(data.y_train[idx])
        topt.zero_grad(set_to_none=True)
        F.cross_entropy(tm(xb), yb).backward()
        topt.step()

    return torch_step


def _epoch_masks(net):
    """masks(batch) -> the dropout keep-masks of one step ({} without dropout, at no cost)."""
    from reference.inputs import dropout_masks
    from reference.spec import describe

    spec = describe(net)
    if not any(s["kind"] == "dropout" for s in spec):
        return lambda batch: {}
    return lambda batch: dropout_masks(spec, INPUT_SHAPE, batch, SEED)


def _time_alternating(runners: dict, order, n_batches: int) -> dict:
    """Seconds each step function spent on the first `n_batches` batches of `order`, the
    functions taking turns every CHUNK batches so that machine noise hits them alike."""
    spent = dict.fromkeys(runners, 0.0)
    for fn in runners.values():  # warm-up
        for idx in order[:5]:
            fn(idx)
    for start in range(0, n_batches, CHUNK):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            for idx in order[start : min(start + CHUNK, n_batches)]:
                fn(idx)
            spent[name] += time.perf_counter() - t0
    return spent
