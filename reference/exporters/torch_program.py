"""A skylark model as a torch program: a `torch.export` ExportedProgram saved as a .pt2 file,
which runs with torch alone (no skylark, no reference code):

    prog = torch.export.load("model.pt2").module()
    logits = prog(torch.randn(8, 1, 28, 28))             # any batch size, NCHW, eval mode

    export_weights("ckpt.npz", "torch", "model.pt2")      # reference.porting: verified, then kept

The program is torch.export's trace of reference.runners.torch_ref.build_torch_model (the torch
reference every `skylark check` compares against) holding the model's weights, in evaluation
mode (BatchNorm's running statistics, no dropout), with a dynamic batch axis. Its parameters
and buffers keep skylark's names (`conv1.0.weight`): `prog.state_dict()` is the state_dict
`skylark export --to torch` writes to a .pt file. It is written and verified like every other
export (reference.porting.export_weights): `run_program` loads it back with
`torch.export.load(...).module()` and its logits are compared with numpy's.
"""

from __future__ import annotations

import numpy as np

from ..formats import Portable

SUFFIX = ".pt2"  # torch.export.save's own suffix; any other --out with --to torch is a state_dict
MAX_BATCH = 1 << 16  # the dynamic batch axis' upper bound (torch.export wants one stated)


def is_program(path) -> bool:
    """Whether `skylark export --to torch --out PATH` writes a program (PATH ends in .pt2)."""
    return str(path).lower().endswith(SUFFIX)


def torch_module(p: Portable):
    """The torch reference's nn.Module of `p`'s spec, holding `p`'s state, in eval mode."""
    import torch

    from ..runners.torch_ref import build_torch_model
    from ..transfer import to_torch

    net = build_torch_model(p.spec, p.input_shape, p.dtype)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_torch(p.state,
                                                                            p.spec).items()}
    own = net.state_dict()
    sd.update({k: v for k, v in own.items() if k.endswith("num_batches_tracked")})
    net.load_state_dict(sd, strict=True)
    return net.eval()


def write_program(p: Portable, path) -> None:
    """torch.export of `p`'s model (eval mode, batch axis dynamic) saved to `path`."""
    import torch

    net = torch_module(p)
    dtype = {"float32": torch.float32, "float64": torch.float64}[p.dtype]
    example = torch.zeros(2, *p.input_shape, dtype=dtype)  # 2: a batch of 1 would specialise
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def run_program(path, p: Portable, x) -> np.ndarray:
    """The logits of the program at `path` for the NCHW batch `x`, loaded by torch alone."""
    import torch

    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()


__all__ = ["SUFFIX", "is_program", "run_program", "torch_module", "write_program"]
