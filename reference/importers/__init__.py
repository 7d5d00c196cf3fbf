"""Import a network as its author wrote it: a torch `nn.Module`, a Keras model or an ONNX file,
into a skylark graph spec (reference.spec) with its weights, so every framework can check it.

    imp = import_model("net.onnx")                        # or "model.keras", "pkg.mod:make_net"
    imp.spec, imp.state, imp.input_shape                  # the graph, its weights, (C, H, W)
    net = imp.graph("float64")                            # a skylark Graph with those weights

Each source has its own module (`onnx_source`, `torch_source`, `keras_source`); all of them
return an `Imported`. What skylark cannot express is an `UnsupportedError` naming the node, the
op and the attribute, never a guess; a file that cannot be read safely is an `ImportFileError`.
Both are ValueErrors whose message is one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ImportFileError(ValueError):
    """A file that cannot be read, or cannot be read safely (one line: the path and why)."""


class UnsupportedError(ValueError):
    """Ops, attributes or patterns skylark cannot express. `items` lists every one found
    (`"op=Resize at node '/up/Resize'"`); the message names the first."""

    def __init__(self, items: list[str], source: str = "") -> None:
        self.items = list(items)
        more = f" (and {len(self.items) - 1} more: --list-unsupported lists them)" \
            if len(self.items) > 1 else ""
        where = f"{source}: " if source else ""
        super().__init__(f"{where}skylark cannot express this model. Received: "
                         f"{self.items[0]}{more}")


@dataclass
class Imported:
    """A network imported into skylark's terms.

    spec: the graph (reference.spec format: kinds, torch names, "name"/"inputs" per node).
    state: every parameter and buffer by skylark name ("{node}.weight", "{node}.running_mean").
    input_shape: (C, H, W) where the source fixes it, else None.
    origin: node name -> the source's name for it (module path, Keras layer, ONNX node).
    notes: adaptations made while importing, each one line, printed to the user.
    """

    spec: list[dict]
    state: dict[str, np.ndarray]
    input_shape: tuple[int, int, int] | None
    source: str  # "torch", "keras" or "onnx"
    origin: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def graph(self, dtype="float32"):
        """A skylark Graph of `spec` holding `state` in `dtype`."""
        from ..spec import build

        net = build(self.spec, dtype)
        net.load_state({k: np.asarray(v, dtype) for k, v in self.state.items()})
        return net
