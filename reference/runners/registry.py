"""`get_runner`: a started Runner for a framework of the table (reference.frameworks)."""

from __future__ import annotations

import importlib

from ..frameworks import FRAMEWORKS, NAMES
from .runner import PLANTS, Runner, quiet_native_logs, require_installed


def get_runner(name: str, plant: str | None = None) -> Runner:
    """A fresh runner for framework `name` (one of NAMES).

    ValueError on an unknown name; FrameworkUnavailable when its libraries are not installed.
    `keras-<backend>` starts a worker subprocess (a few seconds); reuse the runner, and close() it.
    `plant` is the test-only bug-injection hook described in reference.runners.runner.
    """
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown framework. Expected one of {NAMES}. Received: {name!r}")
    if plant is not None and plant not in PLANTS:
        raise ValueError(f"plant must be None or one of {tuple(PLANTS)}. "
                         f"Received: plant={plant!r}")
    if plant is not None and name not in PLANTS[plant]:
        raise ValueError(f"plant {plant} exists for {', '.join(PLANTS[plant])} only. "
                         f"Received: {name!r}")
    fw = FRAMEWORKS[name]
    require_installed(name, fw.modules, fw.install)
    if not fw.in_process:
        from .worker import SubprocessRunner

        return SubprocessRunner(name, fw.keras_backend, plant)
    module, cls = fw.runner.split(":")
    if fw.native_logs:
        with quiet_native_logs():
            mod = importlib.import_module(module)
    else:
        mod = importlib.import_module(module)
    return getattr(mod, cls)(plant)


__all__ = ["get_runner"]
