"""StochasticDepth: drop a whole residual branch per sample (or per batch) in training, like
`torchvision.ops.StochasticDepth` (EfficientNet, ConvNeXt)."""

from __future__ import annotations

import numpy as np

from .base import Layer, check_grad

MODES = ("row", "batch")


class StochasticDepth(Layer):
    """Training: y = x * (noise / (1 - p)), noise ~ Bernoulli(1 - p) of shape (N, 1, ..., 1)
    for mode "row" (one draw per sample) or (1, 1, ..., 1) for "batch"; eval: y = x.

    torchvision's order, kept for float32's rounding: the noise is divided by the survival
    rate first (when it is > 0; p = 1 leaves the zero noise undivided), then multiplies x.
    Any input shape (N, ...). The noise comes from the layer's own generator (`seed`), or, for
    one forward, from `use_mask(mask)` (a keep-mask of the noise's shape): that is how a
    comparison makes every framework drop the same samples. Keras says the same layer as
    `Dropout(p, noise_shape=(None, 1, 1, 1))` (EfficientNet in Keras Applications).
    """

    kind = "stochasticdepth"

    def __init__(self, p: float, mode: str = "row", *, seed: int | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1]. Received: p={p!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
        self.p, self.mode = float(p), mode
        self._rng = np.random.default_rng(seed)
        self._given = None
        self._shape = self._scale = None

    def __repr__(self) -> str:
        return f"StochasticDepth(p={self.p}, mode={self.mode!r})"

    def config(self) -> dict:
        return {"p": self.p, "mode": self.mode}

    def noise_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The noise's shape for an input of shape (N, ...): (N, 1, ...) or (1, 1, ...)."""
        return (shape[0] if self.mode == "row" else 1,) + (1,) * (len(shape) - 1)

    def reseed(self, key) -> None:
        """Draw the next noise from np.random.default_rng(key) (as Dropout.reseed)."""
        self._rng = np.random.default_rng(key)

    def use_mask(self, mask) -> None:
        """The keep-mask (bool or 0/1, `noise_shape`) for the next training forward only."""
        self._given = np.asarray(mask)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        mask, self._given = self._given, None
        self._shape, self._scale = x.shape, None
        if not self.training or self.p == 0:  # torchvision returns the input itself
            return x
        want = self.noise_shape(x.shape)
        if mask is None:
            mask = self._rng.random(want) >= self.p
        elif mask.shape != want:
            raise ValueError(f"StochasticDepth mask must have the noise's shape {want}. "
                             f"Received: mask with shape {mask.shape}")
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
        survival = dtype.type(1 - self.p)
        scale = mask.astype(dtype)
        if survival > 0:
            scale /= survival
        self._scale = scale
        return x * scale

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dy = check_grad(dy, self._need_cache(self._shape), "StochasticDepth")
        return dy if self._scale is None else dy * self._scale

    def output_shape(self, input_shape):
        return tuple(input_shape)
