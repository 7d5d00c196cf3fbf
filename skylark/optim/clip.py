"""Gradient clipping by norm, torch's `clip_grad_norm_` (global, or one tensor at a time)."""

from __future__ import annotations

import math

import numpy as np

from .checks import check_positive

# torch.nn.utils.clip_grad_norm_ divides by (norm + 1e-6); Keras' clipnorm/global_clipnorm,
# optax's clip_by_global_norm and tf.clip_by_global_norm scale by max_norm / max(norm, max_norm):
# a different factor (by ~1e-6 / norm) on every clipped step.
TORCH_EPS = 1e-6


def clip_grad_norm_(model, max_norm: float, per_tensor: bool = False) -> float:
    """Scale the model's gradients in place so their 2-norm is at most about `max_norm`:

        g <- g * min(1, max_norm / (||g|| + 1e-6))

    with ||g|| the norm of all gradients together (torch's clip_grad_norm_ over the
    parameters), or, with `per_tensor`, each parameter's own (clip_grad_norm_ called once per
    parameter). Returns the global norm before clipping, as torch does."""
    max_norm = check_positive("max_norm", max_norm)
    flat = model.flat_grads() if hasattr(model, "flat_grads") else None
    if flat is not None:
        g, entries = flat
        grads = [g[span] for _, _, span in entries]  # views: scaled in place
    else:
        grads = list(model.grads().values())
    norms = [math.sqrt(float(np.vdot(x, x))) for x in grads]
    total = math.sqrt(sum(n * n for n in norms))
    if per_tensor:
        for x, n in zip(grads, norms, strict=True):
            _scale(x, max_norm / (n + TORCH_EPS))
    elif flat is not None:
        _scale(flat[0], max_norm / (total + TORCH_EPS))
    else:
        for x in grads:
            _scale(x, max_norm / (total + TORCH_EPS))
    return total


def _scale(x: np.ndarray, coef: float) -> None:
    if coef < 1.0:  # torch multiplies by min(coef, 1): a factor of exactly 1 changes nothing
        x *= x.dtype.type(coef)
