"""The smooth self-gated activations, y = x * gate(x): SiLU (gate: the sigmoid) and GELU (gate:
the standard normal CDF, exact or by the tanh approximation).

Element-wise: x of any shape (N, ...) -> y of the same shape and dtype. Each keeps x and its
gate for the backward, which computes f'(x) from them as torch does.
"""

from __future__ import annotations

import math

import numpy as np

from .activation import sigmoid
from .base import Layer, check_grad
from .erf import erfc

SQRT_HALF = math.sqrt(0.5)  # 1/sqrt(2): Phi(x) = erfc(-x/sqrt(2)) / 2
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)  # the normal density's factor
TANH_SCALE = math.sqrt(2 / math.pi)  # the tanh approximation's sqrt(2/pi) ...
TANH_CUBIC = 0.044715  # ... and its cubic coefficient (Hendrycks & Gimpel 2016)
APPROXIMATIONS = ("none", "tanh")


class SiLU(Layer):
    """y = x * sigmoid(x) (SiLU, or Swish with beta 1), like `torch.nn.SiLU`.

    dx = dy * s * (1 + x * (1 - s)) with s = sigmoid(x), torch's silu_backward. The sigmoid is
    the overflow-free one of skylark.Sigmoid, so x = +-1000 gives 1000 and -0.
    """

    kind = "silu"

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        s = sigmoid(x)
        self._cache = x, s
        return x * s

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, s = self._need_cache(self._cache)
        dy = check_grad(dy, x.shape, "SiLU")
        # s * (1 + x * (1 - s)) in one scratch array, in place, the same operations in the same
        # order (bit for bit) without four full-size temporaries
        g = np.subtract(1, s)
        g *= x
        g += 1
        g *= s
        return np.multiply(dy, g)

    def output_shape(self, input_shape):
        return tuple(input_shape)


class GELU(Layer):
    """y = x * Phi(x), Phi the standard normal CDF, like `torch.nn.GELU(approximate=...)`.

    approximate="none" (torch's default): Phi(x) = erfc(-x / sqrt(2)) / 2, exact (skylark's own
    erfc, skylark.layers.erf: NumPy has none); dx = dy * (Phi(x) + x * phi(x)), phi the normal
    density exp(-x**2 / 2) / sqrt(2 pi). approximate="tanh": Phi(x) ~ (1 + tanh(sqrt(2/pi) *
    (x + 0.044715 x**3))) / 2, and its exact derivative, in torch's order of operations.

    `approximate` is always stated in the config because the frameworks' defaults differ
    (checked against the installed libraries' signatures, tests/test_gelu.py): torch
    nn.GELU "none" (exact), tf.nn.gelu approximate=False (exact), keras.activations.gelu
    approximate=False (exact; keras.layers.Activation("gelu") uses it), but keras.ops.gelu
    approximate=True and jax.nn.gelu approximate=True (tanh). The two differ by up to ~5e-4.
    """

    kind = "gelu"

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if not isinstance(approximate, str) or approximate not in APPROXIMATIONS:
            hint = (" (True/False is TF's, Keras' and JAX's spelling: True is 'tanh')"
                    if isinstance(approximate, bool) else "")
            raise ValueError(f"GELU approximate must be one of {APPROXIMATIONS}, torch's "
                             f"names{hint}. Received: approximate={approximate!r}")
        self.approximate = approximate
        self._cache = None

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"

    def config(self) -> dict:
        return {"approximate": self.approximate}

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.approximate == "tanh":
            t = np.tanh(TANH_SCALE * (x + TANH_CUBIC * (x * x * x)))
            self._cache = x, t
            return 0.5 * x * (1 + t)
        cdf = 0.5 * erfc(x * -SQRT_HALF)
        self._cache = x, cdf
        return x * cdf

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, gate = self._need_cache(self._cache)
        dy = check_grad(dy, x.shape, "GELU")
        if self.approximate == "tanh":
            t = gate
            inner = TANH_SCALE * (1 + 3 * TANH_CUBIC * (x * x))  # d(tanh's argument)/dx
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner)
        pdf = INV_SQRT_2PI * np.exp(x * x * -0.5)
        return dy * (gate + x * pdf)

    def output_shape(self, input_shape):
        return tuple(input_shape)
