"""skylark's references: the same network in PyTorch, raw TensorFlow and Keras 3 (three backends),
all layout conversions (transfer), and the harness that compares every tensor against numpy.

    from reference import get_runner, FRAMEWORKS
    from reference.check import main          # `skylark check`

Importing this package imports no framework; each is imported when its runner is created.
"""

from .runners import FRAMEWORKS, PLANTS, FrameworkUnavailable, Runner, get_runner
from .spec import build, describe

__all__ = ["FRAMEWORKS", "PLANTS", "FrameworkUnavailable", "Runner", "build", "describe",
           "get_runner"]
