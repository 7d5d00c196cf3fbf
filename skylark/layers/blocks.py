"""Cache blocking: split a layer's work into pieces whose working set stays in the CPU cache.

A layer that streams a whole batch through several numpy passes (im2col, GEMM, max, compare)
reads and writes every intermediate from main memory when the batch is large. Done a block
at a time, each intermediate is written and read again while it is still in the L2 cache,
and the full-size intermediates (the im2col matrix, the pool's row maxima) never exist.
"""

from __future__ import annotations

# A quarter of a 2 MiB per-core L2. Measured at batch 64-256, one thread, a conv's forward plus
# backward blocked against unblocked: 0.57-0.71x the time with blocks of 512 KiB for the convs
# with K <= 25 of the built-in models (Skylark net, vgg-bn's first, LeNet-5's first), but
# 1.07-1.16x with 1 MiB blocks for some of the same shapes: past ~512 KiB of im2col block,
# OpenBLAS's packed panels and the block no longer share the cache.
BLOCK_BYTES = 1 << 19

# Conv2D blocks only when each output element costs few multiply-adds (K = C/groups * kh * kw):
# then the GEMM is bound by memory traffic, which blocking saves. With K = 72 or 150 (vgg-bn's
# and LeNet-5's second convs) the GEMM is bound by arithmetic, and rebuilding the im2col
# blocks in backward made forward plus backward 1.1-1.8x slower than keeping the matrix.
BLOCK_MAX_K = 32


def blocks(n: int, bytes_per_item: int, budget: int | None = None) -> list[slice]:
    """range(n) as consecutive slices of at least one item and about `budget` bytes each
    (default: BLOCK_BYTES, read at each call, so a test can shrink it to force many blocks).

    >>> blocks(5, 400_000)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    per = max(1, (BLOCK_BYTES if budget is None else budget) // max(1, bytes_per_item))
    return [slice(i, min(n, i + per)) for i in range(0, n, per)]
