"""Dropout: zero each element with probability p in training, like `torch.nn.Dropout`."""

from __future__ import annotations

import numpy as np

from .base import Layer, check_grad


class Dropout(Layer):
    """Training: y = x * mask / (1 - p), mask ~ Bernoulli(1 - p) per element; eval: y = x.

    Any shape. The mask comes from the layer's own generator (`seed`), or, for one forward,
    from `use_mask(mask)`: that is how a comparison makes every framework drop the same
    elements, so that even training-mode gradients compare exactly. p = 1 zeroes everything
    (as torch does), p = 0 is the identity.
    """

    kind = "dropout"

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1]. Received: p={p!r}")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)
        self._given = None
        self._scale = None

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"

    def config(self) -> dict:
        return {"p": self.p}

    def reseed(self, key) -> None:
        """Draw the next masks from np.random.default_rng(key): training reseeds every step
        with (seed, step, layer index), which makes runs and resumes reproducible."""
        self._rng = np.random.default_rng(key)

    def use_mask(self, mask) -> None:
        """The keep-mask (bool or 0/1, the input's shape) for the next training forward only."""
        self._given = np.asarray(mask)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        mask, self._given = self._given, None
        if not self.training:
            self._scale = None
            return x
        if mask is None:
            mask = self._rng.random(x.shape) >= self.p
        elif mask.shape != x.shape:
            raise ValueError(f"Dropout mask must have the input's shape {x.shape}. "
                             f"Received: mask with shape {mask.shape}")
        # torch's order: the mask is scaled first (mask / (1 - p)), then multiplies x.
        keep = x.dtype.type(1 - self.p)
        # The scale in x's memory layout (empty_like keeps it; a Conv2D output is (C, H, W, N)
        # in memory), so x * scale and dy * scale never mix two layouts.
        scale = np.empty_like(x)
        if keep:
            # mask * (1 / keep) in one pass: a 0/1 mask times fl(1 / keep) is 0 or fl(1 / keep),
            # the same bits as mask / keep, which took a copy and a division pass
            np.multiply(mask, x.dtype.type(1) / keep, out=scale)
        else:
            scale[...] = 0
        self._scale = scale
        return x * scale

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if not self.training:
            return np.asarray(dy)
        scale = self._need_cache(self._scale)
        return check_grad(dy, scale.shape, "Dropout") * scale

    def output_shape(self, input_shape):
        return tuple(input_shape)
