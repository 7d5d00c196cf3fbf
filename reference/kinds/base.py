"""`Kind`: everything the references know about one layer kind, in one place.

A kind ties together its spec entry (the layer's `config()` plus `"kind"`), its skylark layer,
its float32 budget rule (reference.budgets), and one small builder per framework: `torch`
(an nn.Module), `tf` (the raw tf.nn ops on an NHWC tensor) and `keras` (the Keras layers). The
builders import their framework inside, so importing a kind imports no framework. Each framework
module calls `require_builders` at import, so a kind that lacks a builder fails loudly there
(tests/test_kinds.py) instead of being dropped from one framework's model.

Each builder gets `g`, the layer's `Geometry` for the input size being run (reference.spec):
its index, input and output shapes, resolved pads (top, bottom, left, right) and flat order.
"""

from __future__ import annotations

import numpy as np

FRAMEWORK_BUILDERS = ("torch", "tf", "keras")


class Kind:
    """One layer kind. Subclasses set `name` and `layer` and override what applies."""

    name: str = "?"
    layer: type = type(None)  # the skylark Layer class
    input_rank: int | None = None  # 3: a (C, H, W) map; 1: a flat vector; None: any

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    # --- the spec ------------------------------------------------------------------------------

    def describe(self, layer) -> dict:
        """The spec entry of a skylark layer of this kind (JSON-able)."""
        return {"kind": self.name, **layer.config()}

    def build(self, s: dict, dtype: str, seed: int):
        """A skylark layer from spec entry `s` (fresh torch-style init from `seed`)."""
        cfg = {k: v for k, v in s.items() if k != "kind"}
        if self.layer.param_names:
            return self.layer(**cfg, dtype=dtype, seed=seed)
        return self.layer(**cfg)

    def validate(self, s: dict, in_shape: tuple[int, ...]) -> None:
        """ValueError when this layer cannot take a per-sample input of shape `in_shape`."""
        if self.input_rank == 3 and len(in_shape) != 3:
            raise ValueError(f"{self.name} needs a (C, H, W) input. Received: {in_shape}")
        if self.input_rank == 1 and len(in_shape) != 1:
            raise ValueError(f"{self.name} needs a flat input: put a flatten before it. "
                             f"Received: input shape {in_shape}")

    def flat_source(self, in_shape, out_shape, in_source):
        """The (C, H, W) map whose flatten order a flat output carries, or None.

        Element-wise kinds keep their input's order; a kind with a map output has none."""
        return None if len(out_shape) == 3 else in_source

    # --- the float32 budget rule: reduction lengths (reference.budgets) ------------------------

    def f32_forward(self, s: dict) -> int:
        """Length of the sums this layer's forward adds (0: none, e.g. an element-wise op)."""
        return 0

    def f32_input_grad(self, s: dict) -> int:
        """Length of the sums in this layer's input gradient."""
        return 0

    def f32_weight_grad(self, s: dict, g, batch: int) -> int:
        """Length of the sums in this layer's weight gradient (kinds with parameters)."""
        raise NotImplementedError(f"{self.name}: no parameters")

    # --- one builder per framework (each imports its framework) --------------------------------

    def torch(self, s: dict, g, plant: str | None = None):
        """The torch.nn module for this layer (NCHW, skylark's parameter names)."""
        raise NotImplementedError

    def tf(self, s: dict, g, h, v: dict):
        """Raw TF: the layer applied to the NHWC tensor `h`; `v`: this layer's tf.Variables by
        Keras name ("kernel", "bias")."""
        raise NotImplementedError

    def keras(self, s: dict, g, dtype: str) -> list:
        """The Keras layers (channels_last) mirroring this layer; the last one holds the
        weights. Name it f"l{g.index}" (helper layers f"l{g.index}_pad")."""
        raise NotImplementedError


def pair(v) -> tuple[int, int]:
    """A spec pair ([h, w] list) as a tuple."""
    return int(v[0]), int(v[1])


def padding_arg(p):
    """A spec padding: "valid"/"same" stay strings, [ph, pw] becomes a tuple."""
    return p if isinstance(p, str) else pair(p)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def prod(shape) -> int:
    return int(np.prod(shape))
