"""Execution-path knobs of a case: settings that change which of skylark's code paths run.

    with small_blocks(plan):      # plan["small_blocks"]: conv and pool process in row blocks
        ...

skylark's convolutions and max pools split big tensors into blocks of rows and channels
(skylark.layers.blocks: 512 KB blocks, the input gradient blocked above 8 MB). A fuzz case's
tensors are far smaller, so without this knob the blocked paths would never run. With
`small_blocks` every budget is BYTES, and even a 3x3 map is processed a row or two at a time.
Only numpy (skylark, in this process) is affected; the frameworks compute as always.
"""

from __future__ import annotations

from contextlib import contextmanager

BYTES = 64
NAMES = ("BLOCK_BYTES", "DX_BLOCK_FROM", "DX_BLOCK_BYTES")


@contextmanager
def small_blocks(plan: dict):
    if not plan.get("small_blocks"):
        yield
        return
    from skylark.layers import blocks

    saved = {k: getattr(blocks, k) for k in NAMES}
    try:
        for k in NAMES:
            setattr(blocks, k, BYTES)
        yield
    finally:
        for k, v in saved.items():
            setattr(blocks, k, v)
