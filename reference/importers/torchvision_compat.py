"""`import torchvision` beside a CPU build of torch whose torchvision wheel's C ops cannot load.

The torchvision wheel that pairs with a torch release is built against its CUDA build; beside
the CPU build, its compiled ops (`torchvision._C`: nms, roi_align, ...) fail to load, which
torchvision tolerates, except that importing it registers fake kernels for `torchvision::nms`
and `torchvision::qnms` unconditionally, and that raises "operator torchvision::nms does not
exist". The model definitions (torchvision.models) use none of those ops. `load()` imports
torchvision as it is when it can, and otherwise declares those two op schemas (no kernels:
calling them still fails, loudly) so that the import, and the model definitions, work.
"""

from __future__ import annotations

import sys

# the ops torchvision registers fake kernels for at import, whatever its C extension did
_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIB = None  # the torch.library fragment holding the schemas (kept alive)


def load():
    """The torchvision module; ImportError when it is not installed."""
    global _LIB
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]  # the half-imported package
        import torch

        _LIB = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            _LIB.define(schema)
        import torchvision
    return torchvision
