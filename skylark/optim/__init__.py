"""The optimizers, clipping and learning-rate schedules, each with torch's conventions.

    opt = skylark.optim.Adam(model, lr=1e-3)           # or SGD, AdamW, RMSprop
    opt.zero_grad(); model.backward(dlogits)
    clip_grad_norm_(model, 1.0)                         # optional, as torch's
    opt.lr = schedule.lr(1e-3, step); opt.step()
"""

from .adam import Adam, AdamW
from .clip import clip_grad_norm_
from .config import DEFAULT_LR, OPTIMIZERS, OPTIONS, build_optimizer, clip_config, optimizer_config
from .rmsprop import RMSprop
from .schedule import SCHEDULES, UNITS, Schedule
from .sgd import SGD

__all__ = ["DEFAULT_LR", "OPTIMIZERS", "OPTIONS", "SCHEDULES", "SGD", "UNITS", "Adam", "AdamW",
           "RMSprop", "Schedule", "build_optimizer", "clip_config", "clip_grad_norm_",
           "optimizer_config"]
