"""skylark's references: the same network in PyTorch, raw TensorFlow and Keras 3 (three backends),
all layout conversions (transfer), and the harness that compares every tensor against numpy.

    from reference import get_runner, FRAMEWORKS
    from reference.commands.check import main          # `skylark check`

Importing this package imports no framework; each is imported when its runner is created.
Where things live: docs/design.md ("Architecture").
"""

from .frameworks import FRAMEWORKS, NAMES
from .runners.registry import get_runner
from .runners.runner import PLANTS, FrameworkUnavailable, Runner
from .spec import build, describe

__all__ = ["FRAMEWORKS", "NAMES", "PLANTS", "FrameworkUnavailable", "Runner", "build",
           "describe", "get_runner"]
