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

# A conv that keeps its im2col matrix (one block) computes its input gradient, W^T dy and the
# col2im scatter, a block of output rows at a time once W^T dy would exceed DX_BLOCK_FROM, in
# blocks of about DX_BLOCK_BYTES. Measured at batch 256, backward with the input gradient,
# 1 MiB blocks against one block: 0.72-0.83x the time for LeNet-5's second conv (K = 150,
# W^T dy 15 MB), a K = 72 conv on a 14x14 output (14 MB) and vgg-bn's second conv (stride 2,
# 14 MB); but 1.03-1.15x for a K = 144 conv on 7x7 (7.2 MB) and for LeNet-5's at batch 128
# (7.5 MB), hence the threshold. Blocks of 512 KiB at batch 64 were 1.2-1.4x slower: many
# small col2im calls.
DX_BLOCK_FROM = 8 << 20
DX_BLOCK_BYTES = 1 << 20


def blocks(n: int, bytes_per_item: int, budget: int | None = None) -> list[slice]:
    """range(n) as consecutive slices of at least one item and about `budget` bytes each
    (default: BLOCK_BYTES, read at each call, so a test can shrink it to force many blocks).

    >>> blocks(5, 400_000)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    per = max(1, (BLOCK_BYTES if budget is None else budget) // max(1, bytes_per_item))
    return [slice(i, min(n, i + per)) for i in range(0, n, per)]
