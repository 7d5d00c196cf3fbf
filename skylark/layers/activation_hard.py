"""The piecewise-linear activations of the mobile nets: ReLU6, Hardsigmoid and Hardswish, with
torch's gradient at every kink (each is a plain number, not a convention to guess).

Element-wise: x of any shape (N, ...) -> y of the same shape and dtype. The kinks are exact
float values (0 and 6 for ReLU6, -3 and 3 for the hard functions), so a quantized or clipped
input hits them often, and a gradient convention that differs there is a real divergence.
"""

from __future__ import annotations

import numpy as np

from .activation import _keep
from .base import Layer, check_grad


class ReLU6(Layer):
    """y = min(max(x, 0), 6), like `torch.nn.ReLU6` (torch's hardtanh(x, 0, 6)).

    dx = dy where 0 < x < 6, else 0: torch's hardtanh_backward passes the gradient strictly
    inside (min_val, max_val), so BOTH kinks, x == 0 and x == 6, get 0 (TF's Relu6Grad and
    jax.nn.relu6's custom JVP say the same). Not ReLU's "0 at the kink" mirrored: at x == 6 a
    subgradient of 1 would be as valid mathematically, and is wrong against every framework.
    """

    kind = "relu6"

    def __init__(self) -> None:
        super().__init__()
        self._mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        self._mask = (x > 0) & (x < 6)
        y = np.maximum(x, 0)
        return np.minimum(y, 6, out=y)  # in place: one full-size temporary fewer

    def backward(self, dy: np.ndarray) -> np.ndarray:
        mask = self._need_cache(self._mask)
        dy = check_grad(dy, mask.shape, "ReLU6")
        return _keep(mask, dy)

    def output_shape(self, input_shape):
        return tuple(input_shape)


class Hardsigmoid(Layer):
    """y = relu6(x + 3) / 6, like `torch.nn.Hardsigmoid`: 0 up to -3, 1 from 3 on, linear in
    between. dx = dy / 6 where -3 < x < 3 strictly, else 0 (torch's hardsigmoid_backward: both
    kinks get 0).

    The trap of porting it: the slope. Keras 3's `hard_sigmoid` is this one (x/6 + 1/2,
    clipped), but Keras 2 / tf.keras used slope 0.2 (x/5 + 1/2, clipped at +-2.5), and ONNX's
    HardSigmoid defaults to alpha=0.2, beta=0.5: an ONNX graph must state alpha=1/6, beta=0.5
    (reference.kinds.hard). The forward is computed as torch computes it, (x + 3) clipped to
    [0, 6], then / 6.
    """

    kind = "hardsigmoid"

    def __init__(self) -> None:
        super().__init__()
        self._mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        self._mask = (x > -3) & (x < 3)
        return np.minimum(np.maximum(x + 3, 0), 6) / 6

    def backward(self, dy: np.ndarray) -> np.ndarray:
        mask = self._need_cache(self._mask)
        dy = check_grad(dy, mask.shape, "Hardsigmoid")
        return _keep(mask, dy / 6)

    def output_shape(self, input_shape):
        return tuple(input_shape)


class Hardswish(Layer):
    """y = x * relu6(x + 3) / 6, like `torch.nn.Hardswish` (MobileNetV3): 0 up to -3, x from 3
    on, x (x + 3) / 6 in between; computed as torch does, (x * relu6(x + 3)) / 6.

    dx = 0 where x <= -3, dy * (x / 3 + 1/2) where -3 < x < 3, dy where x >= 3: the installed
    torch's hardswish_backward (2.13). Older torch (up to 2.6) used x < -3 and x <= 3 instead,
    giving -0.5 and 1.5 at the kinks (pytorch/pytorch#147801, fixed by #148049); what is here
    now is also what autodiff of x * relu6(x + 3) / 6 gives in TF, JAX and Keras, whose relu6'
    is 0 at both of its kinks. tests/test_activation_hard.py pins the values at +-3 against
    the installed torch, so a torch that changes them again shows.
    """

    kind = "hardswish"

    def __init__(self) -> None:
        super().__init__()
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        self._x = x
        return x * np.minimum(np.maximum(x + 3, 0), 6) / 6

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = self._need_cache(self._x)
        dy = check_grad(dy, x.shape, "Hardswish")
        inner = np.where(x < 3, dy * (x / 3 + 0.5), dy)  # torch's order: dy * ((x / 3) + 0.5)
        return _keep(x > -3, inner)

    def output_shape(self, input_shape):
        return tuple(input_shape)
