"""ChannelShuffle: ShuffleNet's channel shuffle, like `torch.nn.ChannelShuffle`."""

from __future__ import annotations

import numpy as np

from .base import Layer, check_grad, check_input


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")
    return int(value)


def shuffle_channels(x: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, H, W): view the channels as (groups, C // groups), transpose
    that to (C // groups, groups), read them back in order. Output channel i * groups + j is
    input channel j * (C // groups) + i. Its inverse is the shuffle with C // groups groups."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).swapaxes(1, 2).reshape(n, c, h, w)


class ChannelShuffle(Layer):
    """ShuffleNet's shuffle of the channels of an NCHW map among `groups` groups:
    x (N, C, H, W) -> reshape (N, g, C/g, H, W) -> swap axes 1 and 2 -> reshape (N, C, H, W).
    C must be a multiple of g; g = 1 and g = C leave the channels where they are.

    The trap of porting it: the recipe is about the CHANNEL axis, not about memory. On an NHWC
    tensor (TF, Keras) the same shuffle is reshape (N, H, W, g, C/g) -> swap the last two ->
    reshape; running the NCHW recipe on NHWC memory mixes rows and channels instead
    (reference.kinds.shuffle, tests/test_shuffle.py). backward applies the inverse
    permutation (the shuffle with C/g groups) to dy.
    """

    kind = "channelshuffle"

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = _positive_int(groups, "groups")
        self._shape = None

    def __repr__(self) -> str:
        return f"ChannelShuffle(groups={self.groups})"

    def config(self) -> dict:
        return {"groups": self.groups}

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C, H, W); ValueError unless C is a multiple of groups."""
        if len(input_shape) != 3:
            raise ValueError(f"ChannelShuffle needs a (C, H, W) input. "
                             f"Received: input shape {tuple(input_shape)}")
        if input_shape[0] % self.groups:
            raise ValueError(f"ChannelShuffle needs channels divisible by groups={self.groups}. "
                             f"Received: input with {input_shape[0]} channels")
        return tuple(input_shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "ChannelShuffle", None)
        self.output_shape(x.shape[1:])
        self._shape = x.shape
        return shuffle_channels(x, self.groups)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        shape = self._need_cache(self._shape)
        dy = check_grad(dy, shape, "ChannelShuffle")
        return shuffle_channels(dy, shape[1] // self.groups)
