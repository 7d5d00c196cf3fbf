"""adaptiveavgpool2d: skylark.AdaptiveAvgPool2d (torch's bins: start floor(i H / O), end
ceil((i + 1) H / O); they may overlap and differ in size) in every framework.

How each framework says it:

- torch: nn.AdaptiveAvgPool2d, the definition.
- Keras: keras.layers.AdaptiveAveragePooling2D (Keras 3.12+), channels_last. Checked, not
  assumed: on the torch backend it calls F.adaptive_avg_pool2d; on TensorFlow and JAX it is a
  "two-pool gather" (a stride-1 average pool of the small bin size ceil(H / O) and one of the
  big size ceil(H / O) + 1, then a gather of each bin's start), per axis. That is torch's rule:
  every bin size is one of the two (tests/test_adaptive_pool.py checks the sizes and, in
  every framework, overlapping, uneven, upsampling and 1x1 outputs against numpy).
  One exception, Keras 3.15's JAX backend: it finds each bin's start and end as floor and ceil
  of (i * H) / O computed in floating point, which XLA evaluates as i * H times the rounded
  reciprocal of O. Without x64 that is float32, and 21 * (1 / 7) is 3.0000002, whose ceil is
  4: a bin one cell too long, gathered out of range, which jnp.take fills with NaN. 33 of the
  (H, O) pairs up to 19 x 19 go wrong so, O = 7 among them (7 -> 7, 14 -> 7, 3 -> 7:
  torchvision's AdaptiveAvgPool2d((7, 7))). `keras_jax_bins_are_wrong` replays that
  arithmetic (float32 and float64) and for those sizes the JAX backend gets
  keras_layers.BinMatrixAdaptiveAvgPool2D, raw TF's bin matrices, instead;
  tests/test_adaptive_pool.py keeps the stock layer's NaN in view.
- raw TF and raw JAX have no adaptive pool: `bin_sums`, a fixed 0/1 matrix per axis marking
  each bin's cells, contracted with einsum (S_h x S_w^T), then divided by each bin's cell
  count. Exact, not an approximation: each output is the plain sum of its bin's cells (the
  matrix's other entries are exact zeros, which add no rounding) divided by their number, as
  torch computes it; in float32 the sums' order differs, which the budget below covers.
- ONNX (opset 17, no adaptive op): the same two 0/1 matrices with MatMul (both dtypes have a
  MatMul kernel), then Div.

The bins are written here again (`bins`), not imported from skylark, so that a bin bug in
skylark shows in every framework, not only in torch.
"""

from __future__ import annotations

import numpy as np

import skylark as sk

from .base import Kind, pair


def bins(n: int, out: int) -> list[tuple[int, int]]:
    """torch's bins [start, end) along an axis of length n pooled to `out`:
    aten/src/ATen/native/AdaptivePooling.h, start_index = floor(i * n / out) and
    end_index = ceil((i + 1) * n / out), in integer arithmetic."""
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]


def bin_matrix(n: int, out: int) -> np.ndarray:
    """(out, n) float64 0/1: row i marks the cells of bin i."""
    m = np.zeros((out, n))
    for i, (start, end) in enumerate(bins(n, out)):
        m[i, start:end] = 1.0
    return m


def plan(g, s):
    """(S_h (oh, H), S_w (ow, W), counts (oh, ow)) for the layer's input size."""
    (h, w), (oh, ow) = g.in_shape[1:], pair(s["output_size"])
    s_h, s_w = bin_matrix(h, oh), bin_matrix(w, ow)
    return s_h, s_w, np.outer(s_h.sum(axis=1), s_w.sum(axis=1))


def keras_jax_bins_are_wrong(n: int, out: int) -> bool:
    """Whether Keras' JAX adaptive pool finds other bins than torch's along an axis of n cells
    pooled to `out`: its floor(i n / out) and ceil((i + 1) n / out) as XLA computes them (the
    integer times the rounded reciprocal of `out`), in float32 or in float64."""
    for dtype in (np.float32, np.float64):
        inv = dtype(1) / dtype(out)
        got = [(int(np.floor(dtype(i * n) * inv)), int(np.ceil(dtype((i + 1) * n) * inv)))
               for i in range(out)]
        if got != bins(n, out):
            return True
    return False


def _max_overlap(n: int, out: int) -> int:
    """The most bins that share one cell along an axis."""
    return int(bin_matrix(n, out).sum(axis=0).max())


class AdaptiveAvgPool2d(Kind):
    """Spec: output_size [oh, ow].

    Budget: the forward sums the largest bin's cells, kh * kw terms with kh = ceil(H / oh) + 1
    at most (the division is one more rounding: K_SAFETY, as avgpool2d's); a cell of the input
    gradient adds dy / count from every bin that covers it, at most the product of the per-axis
    overlaps (one division each: the same count). Keras' two-pool gather divides the row sums
    by the bin height before summing the columns: one more rounding, also within K_SAFETY.
    """

    name = "adaptiveavgpool2d"
    layer = sk.AdaptiveAvgPool2d
    input_rank = 3

    def f32_forward(self, s, g, batch):
        s_h, s_w, _ = plan(g, s)
        return int(s_h.sum(axis=1).max() * s_w.sum(axis=1).max())

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        (h, w), (oh, ow) = c.geometry.in_shape[1:], pair(s["output_size"])
        n = c.n + _max_overlap(h, oh) * _max_overlap(w, ow)
        return real_layer.backward(g), n, {}  # linear with positive weights: |g| routed

    def torch(self, s, g, plant=None):
        from torch import nn

        return nn.AdaptiveAvgPool2d(pair(s["output_size"]))

    def tf(self, s, g, h, v, run):
        import tensorflow as tf

        s_h, s_w, count = (tf.constant(a, h.dtype) for a in plan(g, s))
        total = tf.einsum("ih,nhwc,jw->nijc", s_h, h, s_w)  # NHWC: the bins' sums
        return total / count[None, :, :, None]

    def keras(self, s, g, dtype, plant=None):
        import keras

        if plant == "keras_adaptive_as_avgpool":  # planted (tests only): fixed windows
            (h, w), (oh, ow) = g.in_shape[1:], pair(s["output_size"])
            stride = (h // oh, w // ow)  # the usual port: stride H // out, the rest the window
            pool = (h - (oh - 1) * stride[0], w - (ow - 1) * stride[1])
            return [keras.layers.AveragePooling2D(pool, stride, name=f"l{g.index}",
                                                  dtype=dtype)]
        (h, w), (oh, ow) = g.in_shape[1:], pair(s["output_size"])
        if keras.backend.backend() == "jax" and (keras_jax_bins_are_wrong(h, oh)
                                                 or keras_jax_bins_are_wrong(w, ow)):
            from ..runners.keras_layers import BinMatrixAdaptiveAvgPool2D

            return [BinMatrixAdaptiveAvgPool2D(*plan(g, s), name=f"l{g.index}", dtype=dtype)]
        return [keras.layers.AdaptiveAveragePooling2D(pair(s["output_size"]),
                                                      data_format="channels_last",
                                                      name=f"l{g.index}", dtype=dtype)]

    def jax(self, s, g, h, p, run):
        import jax.numpy as jnp

        s_h, s_w, count = (jnp.asarray(a, h.dtype) for a in plan(g, s))
        return jnp.einsum("ih,nchw,jw->ncij", s_h, h, s_w) / count  # NCHW

    def onnx(self, s, g, b, h):
        s_h, s_w, count = plan(g, s)
        cols = b.node("MatMul", [h, b.const(s_w.T)])  # (N, C, H, ow): the column bins' sums
        total = b.node("MatMul", [b.const(s_h), cols])  # (oh, H) @ (N, C, H, ow), broadcast
        return b.node("Div", [total, b.const(count)])
