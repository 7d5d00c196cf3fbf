"""A progress bar: tqdm when installed (the `progress` extra), else plain lines on stderr."""

from __future__ import annotations

import sys
import time


class _Plain:
    """tqdm's small subset we use, printing a line every ~2 s so logs stay readable."""

    def __init__(self, total: int, desc: str, disable: bool) -> None:
        self.total, self.desc, self.disable, self.n = total, desc, disable, 0
        self.postfix, self._last = "", 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and (now - self._last > 2 or self.n == self.total):
            self._last = now
            print(f"{self.desc}: {self.n}/{self.total} {self.postfix}", file=sys.stderr)

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: int, desc: str, disable: bool = False):
    """A context-managed progress bar over `total` steps, written to stderr."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Plain(total, desc, disable)
    return tqdm(total=total, desc=desc, disable=disable, leave=True, file=sys.stderr,
                dynamic_ncols=True, unit="step")
