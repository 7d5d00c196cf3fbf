"""Cache blocking: split a layer's work into pieces whose working set stays in the CPU cache.

A layer that streams a whole batch through several numpy passes (im2col, GEMM, max, compare)
reads and writes every intermediate from main memory when the batch is large. Done a block
at a time, each intermediate is written and read again while it is still in the L2 cache,
and the full-size intermediates (the im2col matrix, the pool's row maxima) never exist.
"""

from __future__ import annotations

# About half of a 2 MiB per-core L2. Measured on the Skylark net at batch 256 (one thread):
# conv forward 1.6x and its weight gradient 2x faster with blocks of ~0.9 MiB than unblocked;
# blocks of ~1.4 MiB were as slow as no blocking at all (the im2col block plus the GEMM's
# output no longer fit beside OpenBLAS's packed panels).
BLOCK_BYTES = 1 << 20


def blocks(n: int, bytes_per_item: int, budget: int | None = None) -> list[slice]:
    """range(n) as consecutive slices of at least one item and about `budget` bytes each
    (default: BLOCK_BYTES, read at each call, so a test can shrink it to force many blocks).

    >>> blocks(5, 400_000)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    per = max(1, (BLOCK_BYTES if budget is None else budget) // max(1, bytes_per_item))
    return [slice(i, min(n, i + per)) for i in range(0, n, per)]
