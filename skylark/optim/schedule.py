"""Learning-rate schedules: constant, step and cosine, each with an optional linear warmup,
stepped per optimizer step or per epoch, as torch's lr_scheduler classes compute them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .checks import check_non_negative, check_positive

SCHEDULES = ("constant", "step", "cosine")
UNITS = ("step", "epoch")


@dataclass(frozen=True)
class Schedule:
    """The learning rate at unit t = 0, 1, ..., total - 1 (a unit is a step or an epoch):

        warmup:    lr * (t + 1) / warmup               for t < warmup (never 0; torch's
                                                       LinearLR(start_factor=1/warmup))
        then, with s = t - warmup:
        constant:  lr
        step:      lr * gamma ** (s // step_size)      (torch's StepLR)
        cosine:    min_lr + (lr - min_lr) * (1 + cos(pi * s / (total - warmup))) / 2
                                                       (torch's CosineAnnealingLR, T_max =
                                                       total - warmup)

    Per epoch, every step of epoch e runs at the rate of unit e. optax's linear_schedule and
    Keras' warmup start at 0 (one wasted step) and are shifted one unit from this.
    """

    name: str = "constant"
    total: int = 1  # units in the run (steps or epochs)
    unit: str = "step"
    warmup: int = 0
    step_size: int | None = None
    gamma: float = 0.1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}. "
                             f"Received: schedule={self.name!r}")
        if self.unit not in UNITS:
            raise ValueError(f"the schedule's unit must be 'step' or 'epoch'. "
                             f"Received: unit={self.unit!r}")
        for name in ("total", "warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (name == "total"):
                raise ValueError(f"{name} must be an int >= {int(name == 'total')}. "
                                 f"Received: {name}={v!r}")
        if self.warmup >= self.total and self.warmup:
            raise ValueError(f"the warmup is as long as the run or longer: {self.warmup} "
                             f"{self.unit}s of {self.total}. Received: warmup={self.warmup}")
        if self.name == "step":
            s = self.step_size
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ValueError(f"the step schedule needs step_size, an int >= 1 ({self.unit}s "
                                 f"between decays). Received: step_size={s!r}")
            check_positive("gamma", self.gamma)
        check_non_negative("min_lr", self.min_lr)

    def factor_free(self) -> bool:
        return self.name == "constant" and not self.warmup

    def lr(self, base_lr: float, t: int) -> float:
        """The learning rate at unit t (0-based)."""
        if t < self.warmup:
            return base_lr * (t + 1) / self.warmup
        s = t - self.warmup
        if self.name == "step":
            return base_lr * self.gamma ** (s // self.step_size)
        if self.name == "cosine":
            span = self.total - self.warmup
            return self.min_lr + (base_lr - self.min_lr) * (1 + math.cos(math.pi * s / span)) / 2
        return base_lr

    def lrs(self, base_lr: float, units) -> list[float]:
        """The rate of each step, given each step's unit index (its step or its epoch)."""
        return [self.lr(base_lr, t) for t in units]

    def to_dict(self) -> dict:
        """JSON-able, only what this schedule reads (checkpoints record it)."""
        d = asdict(self)
        if self.name != "step":
            d.pop("step_size"), d.pop("gamma")
        if self.name != "cosine":
            d.pop("min_lr")
        if self.factor_free():
            return {"name": "constant"}
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> Schedule:
        return cls(**(d or {}))
