"""Node names for an imported ONNX graph: the torch module path where the file keeps it.

torch.onnx.export keeps a module's parameter names as initializer names ("layer1.0.conv1.weight"),
except where it folded a BatchNorm into the conv ("onnx::Conv_17" in the legacy exporter). The
dynamo exporter also writes each node's module path in its metadata ("pkg.torch.onnx.name_scopes":
['', 'layer1', 'layer1.0', 'layer1.0.relu', 'relu']); the legacy exporter spells it in the node
name ("/layer1/layer1.0/relu/Relu"). `Namer.name` tries them in that order, then the sanitized
ONNX node name, and makes each unique, so a torch module and its ONNX export share node names.
"""

from __future__ import annotations

import re

_VALID = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def sanitize(name: str) -> str:
    """`name` with every run of characters outside [A-Za-z0-9_.] as "_", no empty dot part."""
    parts = [re.sub(r"[^A-Za-z0-9_]+", "_", p).strip("_") for p in name.split(".")]
    return ".".join(p for p in parts if p) or "node"


def legacy_path(node_name: str) -> str:
    """"/features/features.1/block/block.1/fc1/Conv" -> "features.1.block.1.fc1" (each scope
    repeats its parent's attribute name before its own index); "" when there is no scope."""
    parts = [p for p in node_name.split("/") if p][:-1]
    path, prev = "", ""
    for p in parts:
        if prev and p.startswith(prev + "."):
            path += p[len(prev):]
        else:
            path = f"{path}.{p}" if path else p
        prev = p
    return path


def dynamo_path(node) -> str:
    """The module path the dynamo exporter records for `node` ("" when none)."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            scopes = [s.strip(" '\"") for s in p.value.strip("[]").split(",")]
            return scopes[-2] if len(scopes) >= 2 else ""
    return ""


class Namer:
    """Unique, valid node names, in the order they are asked for."""

    def __init__(self) -> None:
        self.used: set[str] = {"input"}

    def name(self, node, weight: str | None = None) -> str:
        base = ""
        if weight and weight.endswith(".weight") and _VALID.fullmatch(weight):
            base = weight[: -len(".weight")]
        base = base or dynamo_path(node) or (legacy_path(node.name) if "/" in node.name else "")
        if not base or not _VALID.fullmatch(base):
            base = sanitize(node.name or node.op_type)
        out, k = base, 1
        while out in self.used:
            k += 1
            out = f"{base}_{k}"
        self.used.add(out)
        return out
