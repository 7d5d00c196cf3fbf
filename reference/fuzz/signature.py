"""How a case fails, in words that survive shrinking: the framework, the pass and the layer kind
of the first diverging tensor, never the node's name (shrinking renames nodes).

    signature("torch", report_row, layers)   # "torch FAIL loss: conv2d.weight gradient"
"""

from __future__ import annotations

from ..spec import node_names, node_of


def _kind_of(node: str, layers: list[dict]) -> str:
    names = node_names(layers)
    return layers[names.index(node)]["kind"] if node in names else f"?{node}"


def describe_tensor(tensor: str, layers: list[dict]) -> str:
    """"out.b0.conv" -> "conv2d output", "loss/d.b0.conv.weight" -> "conv2d.weight gradient",
    "stat.b1.bn.running_var" -> "batchnorm2d.running_var", "cot/d.input" -> "input gradient"."""
    name = tensor.split("/", 1)[-1]
    if name == "loss":
        return "loss"
    if name.startswith("stat."):
        key = name[len("stat."):]
        return f"{_kind_of(node_of(key), layers)}.{key.rsplit('.', 1)[1]}"
    if name.startswith("out."):
        return f"{_kind_of(name[len('out.'):], layers)} output"
    if name == "d.input":
        return "input gradient"
    if name.startswith("d.out."):
        return f"{_kind_of(name[len('d.out.'):], layers)} output gradient"
    key = name[len("d."):]
    return f"{_kind_of(node_of(key), layers)}.{key.rsplit('.', 1)[1]} gradient"


def first_failure(result: dict) -> tuple[str, str] | None:
    """(pass, tensor) of a compare_tensors result's first diverging tensor: forward first,
    then the loss pass, then the cotangent pass."""
    if result.get("first_forward"):
        return "forward", result["first_forward"]
    for part in ("loss", "cot"):
        tensor = (result.get("first_backward") or {}).get(part)
        if tensor:
            return part, tensor
    return None


def signature(framework: str, result: dict, layers: list[dict]) -> str:
    """One line naming how `framework` failed (compare_tensors' result, or an ERROR)."""
    if result["status"] == "ERROR":
        return f"{framework} ERROR: {result['reason'].split(':', 1)[0]}"
    where = first_failure(result)
    if where is None:
        return f"{framework} {result['status']}"
    return f"{framework} FAIL {where[0]}: {describe_tensor(where[1], layers)}"
