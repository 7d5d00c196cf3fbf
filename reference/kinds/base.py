"""`Kind`: everything the references know about one layer kind, in one place.

A kind ties together its spec entry (the layer's `config()` plus `"kind"`), its skylark layer,
its float32 budget rule (reference.budgets), and one small builder per framework: `torch`
(an nn.Module), `tf` (the raw tf.nn ops on an NHWC tensor), `keras` (the Keras layers), `jax`
(jax.lax / jax.numpy ops on an NCHW array: skylark's own layout, so no conversion) and `onnx`
(the ONNX nodes on an NCHW tensor, forward only; reference.runners.onnx_graph). The
builders import their framework inside, so importing a kind imports no framework. Each framework
module calls `require_builders` at import, so a kind that lacks a builder fails loudly there
(tests/test_kinds.py) instead of being dropped from one framework's model.

Each builder gets `g`, the layer's `Geometry` for the input size being run (reference.spec):
its index, input and output shapes, resolved pads (top, bottom, left, right) and flat order.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

FRAMEWORK_BUILDERS = ("torch", "tf", "keras", "jax", "onnx")


class Kind:
    """One layer kind. Subclasses set `name` and `layer` and override what applies."""

    name: str = "?"
    layer: type = type(None)  # the skylark Layer class
    input_rank: int | None = None  # 3: a (C, H, W) map; 1: a flat vector; None: any
    in_field: str | None = None  # the spec field the input's channels (features) must equal
    uses_mask = False  # training needs a keep-mask from the harness (dropout, stochastic depth)
    multi_input = False  # the builders get a LIST of input tensors (Add, Concat, Multiply)
    # Keras/TF names of the layer's state where they differ from torch's ("weight" -> "kernel")
    keras_names: ClassVar[dict] = {"weight": "kernel"}

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    # --- the spec ------------------------------------------------------------------------------

    def describe(self, layer) -> dict:
        """The spec entry of a skylark layer of this kind (JSON-able)."""
        return {"kind": self.name, **layer.config()}

    def build(self, s: dict, dtype: str, seed: int):
        """A skylark layer from spec entry `s` (fresh torch-style init from `seed`)."""
        cfg = {k: v for k, v in s.items() if k not in ("kind", "name", "inputs")}
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
        if self.in_field and in_shape[0] != s[self.in_field]:
            unit = "features" if len(in_shape) == 1 else "channels"
            raise ValueError(f"{self.name} expects {s[self.in_field]} {unit}. "
                             f"Received: input shape {in_shape}")

    def validate_inputs(self, s: dict, in_shapes, in_sources) -> None:
        """The multi-input kinds' `validate`: ValueError when the inputs cannot be joined. A
        flattened map among them is refused: its feature order differs between frameworks
        (CHW in torch, HWC in Keras), and a join of two such orders has no single layout."""
        if any(src is not None for src in in_sources):
            raise ValueError(f"{self.name} of flattened maps cannot be mirrored (the flatten "
                             f"order differs between frameworks): flatten after the "
                             f"{self.name}. Received: input shapes {list(in_shapes)}")

    def merged_flat_source(self, in_shapes, out_shape, in_sources):
        """The multi-input kinds' `flat_source`: none (flattened inputs are refused)."""
        return None

    def flat_source(self, in_shape, out_shape, in_source):
        """The (C, H, W) map whose flatten order a flat output carries, or None.

        Element-wise kinds keep their input's order; a kind with a map output has none."""
        return None if len(out_shape) == 3 else in_source

    def mask_shape(self, s: dict, batch, in_shape) -> tuple:
        """A `uses_mask` kind's keep-mask shape for `batch` samples (an int, or "N" for an
        ONNX graph input) of per-sample shape `in_shape`: by default one entry per element
        (dropout), in skylark's layout (NCHW, or CHW-ordered flat): Keras and raw TF get it
        converted like an activation, unless every axis but the batch's is 1 (stochastic
        depth's), which has the same layout everywhere (Runner.keras_masks)."""
        return (batch, *in_shape)

    def informative_state(self, s: dict, state: dict, rng) -> dict:
        """The layer's state (name -> array) for a check: where the framework's initial state
        would hide a bug (BatchNorm's weight 1, bias 0, mean 0, var 1 make a swapped weight and
        bias, or a variance used as a standard deviation, invisible), a random one instead."""
        return state

    # --- the float32 budget rule (reference.budgets, docs/design.md) --------------------------

    def f32_forward(self, s: dict, g, batch: int) -> int:
        """Length of the sums this layer's forward adds (0: none, e.g. an element-wise op)."""
        return 0

    def f32_forward_in(self, s: dict, g, batch: int, real_layer) -> int:
        """`f32_forward` for the mode `real_layer` ran in (the same in both, unless a kind
        says otherwise: BatchNorm sums over the batch in training only)."""
        return self.f32_forward(s, g, batch)

    def f32_merge_n(self, ns) -> float:
        """A multi-input kind's n_reduce before its own work, from its inputs' counts: the
        largest (a sum or a concatenation errs no more than its worst input)."""
        return max(ns)

    def f32_input_grad(self, s: dict) -> int:
        """Length of the sums in this layer's input gradient."""
        return 0

    def f32_weight_grad(self, s: dict, g, batch: int) -> int:
        """Length of the sums in this layer's weight gradient (kinds with parameters)."""
        raise NotImplementedError(f"{self.name}: no parameters")

    def f32_abs_forward(self, s: dict, abs_layer, real_layer, a):
        """A bound M on the output's magnitude (and on how input errors grow through the
        layer) from the input bound `a` >= 0: by default the layer itself on |x| and |W|."""
        return abs_layer.forward(a)

    def f32_backward(self, s: dict, g, abs_layer, real_layer, c):
        """One backward step of the budget: (bound on the input gradient, its n_reduce,
        {parameter: (n_reduce, gradient bound)}) from the output-gradient bound `g` >= 0 and
        `c` (reference.budgets.Step: n, n_in, m_in, batch, geometry)."""
        n = c.n + self.f32_input_grad(s)
        if not abs_layer.param_names:
            return real_layer.backward(g), n, {}  # numpy's own routing / mask / reshape
        g_in = abs_layer.backward(g)  # |W|^T g, and g^T |x| into abs_layer.grads
        n_w = self.f32_weight_grad(s, c.geometry, c.batch)
        # a weight multiplies the input (its error too); a bias does not
        grads = {k: (c.n + n_w + (c.n_in if k == "weight" else 0), v)
                 for k, v in abs_layer.grads.items()}
        return g_in, n, grads

    def f32_stats(self, s: dict, real_layer, a, n_in: float, batch: int) -> dict:
        """Budgets of the running statistics this layer updates: {buffer: (n_reduce, bound)}."""
        return {}

    # --- one builder per framework (each imports its framework) --------------------------------

    def torch(self, s: dict, g, plant: str | None = None):
        """The torch.nn module for this layer (NCHW, skylark's parameter names)."""
        raise NotImplementedError

    def tf(self, s: dict, g, h, v: dict, run):
        """Raw TF: the layer applied to the NHWC tensor `h`; `v`: this layer's tf.Variables by
        Keras name ("kernel", "bias", "moving_mean", ...); `run`: the pass's `TFRun` (training
        mode, dropout masks, and where a layer puts its updated running statistics)."""
        raise NotImplementedError

    def keras(self, s: dict, g, dtype: str, plant: str | None = None) -> list:
        """The Keras layers (channels_last) mirroring this layer; the last one holds the
        weights. Name it f"l{g.index}" (helper layers f"l{g.index}_pad")."""
        raise NotImplementedError

    def jax(self, s: dict, g, h, p: dict, run):
        """Raw JAX: the layer applied to the NCHW array `h` (skylark's layout: conv dimension
        numbers NCHW/OIHW, CHW flatten order); `p`: this layer's state by skylark name
        ("weight", "bias", "running_mean", ...); `run`: the pass's `JaxRun` (training mode,
        dropout masks, and where a layer puts its updated running statistics)."""
        raise NotImplementedError

    def onnx(self, s: dict, g, b, h: str) -> str:
        """ONNX (forward only): add this layer's nodes to the graph `b`
        (reference.runners.onnx_graph: `b.node`, `b.const`, `b.param(f"{g.name}.weight")`,
        `b.training`, `b.portable`) on the NCHW tensor named `h`; return the output's name."""
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
