"""torch's own optimizers, clipping and lr schedulers for a skylark configuration: torch.optim is
the definition skylark.optim follows, so nothing is adapted here."""

from __future__ import annotations

import torch

from skylark.optim import Schedule

NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}


def torch_optimizer(params, config: dict) -> torch.optim.Optimizer:
    """torch.optim.<name>(params, **options) for optimizer_config's dict."""
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()
               if k != "name"}
    return getattr(torch.optim, NAMES[config["name"]])(params, **options)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """What a torch lr scheduler does to apply its rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_(params, clip: dict | None) -> None:
    """torch.nn.utils.clip_grad_norm_ over all parameters, or once per parameter."""
    if clip is None:
        return
    params = list(params)
    if clip["per_tensor"]:
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], clip["max_norm"])
    else:
        torch.nn.utils.clip_grad_norm_(params, clip["max_norm"])


def torch_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule):
    """torch's lr_scheduler objects computing `schedule`, stepped once per unit: LinearLR
    (start_factor = 1/warmup) then StepLR or CosineAnnealingLR (T_max = total - warmup), joined
    by SequentialLR."""
    S = torch.optim.lr_scheduler
    if schedule.name == "step":
        main = S.StepLR(optimizer, schedule.step_size, schedule.gamma)
    elif schedule.name == "cosine":
        main = S.CosineAnnealingLR(optimizer, schedule.total - schedule.warmup, schedule.min_lr)
    else:
        main = S.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not schedule.warmup:
        return main
    # a warmup of 1 is one step at the full rate, and the main schedule starts after it
    warm = S.ConstantLR(optimizer, factor=1.0, total_iters=0) if schedule.warmup == 1 else \
        S.LinearLR(optimizer, start_factor=1 / schedule.warmup, end_factor=1.0,
                   total_iters=schedule.warmup - 1)
    return S.SequentialLR(optimizer, [warm, main], milestones=[schedule.warmup])
