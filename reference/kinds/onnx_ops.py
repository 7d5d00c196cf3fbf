"""Small ONNX pieces the kinds' `onnx` builders share (the graph `b`: reference.runners.onnx_graph).

`onnx_pads` turns skylark's resolved pads (top, bottom, left, right) into ONNX's order (the
begins of H and W, then their ends). `window_taps` is the float64-capable spelling of a window
op: the padded map sliced once per kernel tap (the strided view every window reads at that tap),
which Conv, AveragePool and MaxPool reduce in their own way.
"""

from __future__ import annotations


def onnx_pads(pads) -> list[int]:
    """(top, bottom, left, right) -> ONNX's [top, left, bottom, right]."""
    t, b, l, r = pads
    return [t, l, b, r]


def pad(b, h: str, pads, value: float = 0.0) -> str:
    """`h` (N, C, H, W) padded with `value` by (top, bottom, left, right); unchanged if none."""
    if not any(pads):
        return h
    t, bo, l, r = pads
    return b.node("Pad", [h, b.ints(0, 0, t, l, 0, 0, bo, r), b.const(value)], mode="constant")


def window_taps(b, hp: str, out_hw, kernel, stride, dilation=(1, 1)) -> list[str]:
    """For each tap (p, q) of the kernel, row-major, the (N, C, Ho, Wo) slice of the padded map
    `hp` that window (i, j) reads there: hp[:, :, p*dh + i*sh, q*dw + j*sw]."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    taps = []
    for p in range(kh):
        for q in range(kw):
            starts = (p * dh, q * dw)
            ends = (starts[0] + (ho - 1) * sh + 1, starts[1] + (wo - 1) * sw + 1)
            taps.append(b.node("Slice", [hp, b.ints(*starts), b.ints(*ends), b.ints(2, 3),
                                         b.ints(sh, sw)]))
    return taps


def channel_vector(b, v: str, c: int) -> str:
    """A per-channel vector (C,) reshaped to (1, C, 1, 1) to broadcast over an NCHW map."""
    return b.node("Reshape", [v, b.ints(1, c, 1, 1)])
