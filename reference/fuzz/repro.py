"""A shrunk failure on disk: the model JSON `skylark check --model` reads, and its command.

    path = save(plan, failure, "fuzz-out")     # fuzz-out/repro-<seed>-<index>-torch.json
    command(path, plan, "torch")               # "skylark check --model ... --frameworks torch"

The JSON holds "layers" (what --model reads), "plan" (the case, for `skylark fuzz --replay`),
"failure" (signature and detail) and "command". A finite-difference or config round-trip
failure has no framework to name, and `check` has no knob for skylark's block sizes
(reference.fuzz.knobs): their command is `skylark fuzz --replay PATH`. A training failure
(reference.fuzz.train: "torch FAIL train step 2: ...") trains on the case's own batch, which
`skylark compare` (it trains on a dataset) cannot be given: its command is
`skylark fuzz --replay PATH --frameworks torch`, which reruns the lockstep of plan["train"].
"""

from __future__ import annotations

import json
import os

from .plan import build_layers


def command(path: str, plan: dict, framework: str, signature: str = "") -> str:
    if f"{framework} ERROR train" in signature or f"{framework} FAIL train" in signature:
        return f"skylark fuzz --replay {path} --frameworks {framework}"
    if framework.startswith("numpy") or plan.get("small_blocks"):  # check has no such knob
        return f"skylark fuzz --replay {path}"
    c, h, w = plan["input_shape"]
    return (f"skylark check --model {path} --frameworks {framework} --dtype {plan['dtype']} "
            f"--input {plan['input']} --input-shape {c},{h},{w} --batch {plan['batch']} "
            f"--seed {plan['seed']} --mode {plan['mode']} --reduction {plan['reduction']} "
            f"--label-smoothing {plan['label_smoothing']}")


def save(plan: dict, failure: dict, out: str, name: str) -> dict:
    """Write the repro of `failure` ({framework, signature, detail}) found on `plan` as
    out/repro-<name>.json; returns {"path", "command"}."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"repro-{name}.json")
    cmd = command(path, plan, failure["framework"], failure.get("signature", ""))
    with open(path, "w") as fh:
        json.dump({"layers": build_layers(plan), "plan": plan, "failure": failure,
                   "command": cmd}, fh, indent=1)
    return {"path": path, "command": cmd}


def load_plan(path: str) -> dict:
    """The plan of a saved repro (ValueError naming the file when it has none)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the repro {path!r}: {e}") from None
    if not isinstance(data, dict) or "plan" not in data:
        raise ValueError(f"a fuzz repro has a \"plan\". Received: {path!r}")
    return data["plan"]
