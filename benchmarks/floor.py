"""The machine's floor for one step of a model: its multiply-adds as one float32 GEMM, and its
unfused memory traffic as one streaming copy, both timed in the same rounds as the frameworks.

    work = step_work(net, (1, 28, 28))     # per-sample multiply-adds and bytes, train and infer
    gemm_floor(work["train_macs"] * batch) # a closure: one GEMM of that many multiply-adds

Multiply-adds (MACs): a Conv2D's forward is N*Ho*Wo*O*(C/G)*kh*kw, its weight gradient the same
again, its input gradient the same again (skipped for the first layer: the data needs no
gradient, in numpy and in torch); a Dense layer's are N*in*out each. Pools, BatchNorm and
activations do no multiply-adds worth counting. This is the arithmetic any implementation must
do; at the machine's best GEMM throughput it is a hard lower bound on the step's time.

Traffic (bytes, float32): what a step moves when every layer is a separate pass over memory, as
in numpy or eager torch: in forward each layer reads its input and writes its output; in
backward each layer reads the output gradient and one saved tensor and writes the input gradient
(the first layer writes none). Flatten is a free reshape and counts nothing; parameters are
negligible here. A streaming copy of half that many bytes (each byte read once, written once)
times what moving it costs at best; fusing layers (as XLA or inductor can) is the only way under
it.
"""

from __future__ import annotations

import math

import numpy as np

FREE = ("flatten",)  # layers that are a view: no pass over memory


def step_work(net, input_shape) -> dict:
    """Per-sample multiply-adds and bytes of a training step and of inference, node by node
    of the graph (a join reads all its inputs; a node that reads only the data writes no input
    gradient)."""
    import skylark as sk

    shapes = {sk.INPUT: tuple(input_shape)}
    fwd, bwd, f_bytes, b_bytes = 0, 0, 0, 0
    for node in net.nodes:
        layer, ins = node.layer, [shapes[r] for r in node.inputs]
        first = all(r == sk.INPUT for r in node.inputs)
        out = shapes[node.name] = tuple(layer.output_shape(ins[0] if layer.n_inputs == 1
                                                           else ins))
        macs = _macs(layer, ins[0], out)
        fwd += macs
        bwd += macs * (1 if first else 2)  # weight gradient, plus the input gradient
        if layer.kind not in FREE:
            n_in, n_out = sum(math.prod(shape) for shape in ins), math.prod(out)
            f_bytes += 4 * (n_in + n_out)
            b_bytes += 4 * (n_out + n_in + (0 if first else n_in))
    return {"infer_macs": fwd, "train_macs": fwd + bwd,
            "infer_bytes": f_bytes, "train_bytes": f_bytes + b_bytes}


def _macs(layer, shape, out) -> int:
    if layer.kind == "conv2d":
        kh, kw = layer.kernel_size
        return math.prod(out) * (layer.in_channels // layer.groups) * kh * kw
    if layer.kind == "dense":
        return layer.in_features * layer.out_features
    return 0


def gemm_floor(macs: int):
    """A closure doing one float32 GEMM (m, k) @ (k, n) with m*k*n ~= macs, the most even
    shape (what BLAS runs best), into a preallocated output; and its exact multiply-adds."""
    side = max(1, round(macs ** (1 / 3)))
    m = n = side
    k = max(1, round(macs / (m * n)))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    return (lambda: np.matmul(a, b, out=out)), m * k * n


def traffic_floor(nbytes: int):
    """A closure copying nbytes/2 between two float32 buffers (nbytes moved: read + write)."""
    count = max(1, nbytes // 8)
    src, dst = np.ones(count, np.float32), np.empty(count, np.float32)
    return lambda: np.copyto(dst, src)
