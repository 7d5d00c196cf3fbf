"""Dense: y = x @ W.T + b, like `torch.nn.Linear`."""

from __future__ import annotations

import numpy as np

from .base import Layer, as_dtype, check_input


class Dense(Layer):
    """x: (N, in_features) -> y: (N, out_features); weight: (out, in) as torch; bias: (out,)."""

    kind = "dense"

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        dtype="float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int. Received: {name}={v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = as_dtype(dtype)
        bound = 1.0 / np.sqrt(self.in_features)  # torch's default init
        rng = np.random.default_rng(seed)
        shape = (self.out_features, self.in_features)
        self.weight = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.bias = (
            rng.uniform(-bound, bound, self.out_features).astype(self.dtype) if bias else None
        )
        self._x = None
        self.zero_grad()

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, bias={self.bias is not None})"

    def config(self) -> dict:
        """{in_features, out_features, bias}, JSON-able."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 2, "Dense", self.dtype)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"Dense expects {self.in_features} input features. "
                f"Received: input with shape {x.shape}"
            )
        self._x = x
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias  # in place: no second (N, out) array
        return y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dy: (N, out) -> dx: (N, in); adds dweight = dy.T @ x and dbias = sum_n dy.

        `input_grad=False` skips dx and returns None (a first layer's input needs none)."""
        x = self._need_cache(self._x)
        dy = np.asarray(dy, dtype=self.dtype)
        # np.dot, not `@`: matmul sends a batch of one (inner size 1) down a slow non-BLAS
        # outer-product loop, 5x slower than this.
        if x.flags.f_contiguous and not x.flags.c_contiguous:
            # x is a transposed view (see below): x^T is C-contiguous, and OpenBLAS takes
            # (in, N) @ (N, out) 1.4x faster than (out, N) @ (N, in) on these skinny shapes
            # (measured: 137 vs 197 us for 1352 -> 10 at batch 256); the same sums, transposed.
            dw = np.dot(x.T, dy).T
        else:
            dw = np.dot(dy.T, x)
        self._accumulate("weight", dw)
        if self.bias is not None:
            self._accumulate("bias", np.add.reduce(dy, axis=0))  # dy.sum(0) minus its wrapper
        if not input_grad:
            return None
        if x.flags.f_contiguous and not x.flags.c_contiguous:
            # x is a transposed view (a Flatten of a Conv2D/MaxPool2D output, whose memory is
            # (C, H, W, N)): hand dx back in that layout, (W^T dy^T)^T, so the layers before
            # us read it with unit stride (measured at batch 256: max-pool backward 1.7x faster)
            return (self.weight.T @ dy.T).T
        return dy @ self.weight

    def output_shape(self, input_shape: tuple[int]) -> tuple[int]:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Dense expects {self.in_features} input features. "
                f"Received: input feature shape {tuple(input_shape)}"
            )
        return (self.out_features,)
