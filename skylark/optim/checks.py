"""The argument checks every optimizer and schedule shares: one line naming the value."""

from __future__ import annotations

import math


def _number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number. Received: {name}={v!r}")
    return float(v)


def check_positive(name: str, v) -> float:
    if _number(name, v) <= 0:
        raise ValueError(f"{name} must be > 0. Received: {name}={v!r}")
    return float(v)


def check_non_negative(name: str, v) -> float:
    if _number(name, v) < 0:
        raise ValueError(f"{name} must be >= 0. Received: {name}={v!r}")
    return float(v)


def check_unit(name: str, v) -> float:
    """A decay rate in [0, 1): beta, alpha, momentum."""
    if not 0.0 <= _number(name, v) < 1.0:
        raise ValueError(f"{name} must be in [0, 1). Received: {name}={v!r}")
    return float(v)


def check_betas(betas) -> tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be two numbers (beta1, beta2). Received: betas={betas!r}") \
            from None
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1). Received: betas={betas!r}")
    return float(b1), float(b2)
