"""How each framework's own optimizer is made to compute torch's (and skylark's) step, and what
cannot be made to.

skylark's optimizers follow torch.optim (skylark.optim). Every reference trains with its own
framework's optimizer: torch.optim, keras.optimizers, optax for raw JAX, tf.raw_ops' Resource-
Apply* kernels for raw TF. Where a framework spells a step differently but a per-step argument
makes it the same in exact arithmetic, the reference adapts that argument (the functions below,
one per convention); where nothing does, `inexpressible` names why, and the framework is
reported as not expressible for that option, never run close enough.
"""

from __future__ import annotations

import math

# torch.nn.utils.clip_grad_norm_'s epsilon: g * min(1, max_norm / (norm + 1e-6))
CLIP_EPS = 1e-6

# Which family each framework's optimizer comes from.
FAMILY = {"numpy": "skylark", "torch": "torch", "tf": "tf", "jax": "optax"}


def family(framework: str) -> str:
    return FAMILY.get(framework, "keras")


def inexpressible(framework: str, config: dict) -> str | None:
    """Why `framework`'s own optimizer cannot compute `config` (optimizer_config's dict) as
    torch does, or None when it can (possibly with the adaptations below)."""
    fam = family(framework)
    if config["name"] == "rmsprop" and fam in ("keras", "tf"):
        op = "keras.optimizers.RMSprop" if fam == "keras" else "tf.raw_ops.ResourceApplyRMSProp"
        return (f"{op} adds eps inside the square root (g / sqrt(s + eps)); torch's RMSprop adds "
                f"it outside (g / (sqrt(s) + eps)), and no eps makes the two equal for every s")
    return None


def uncorrected_eps(eps: float, beta2: float, t: int) -> float:
    """The eps that makes an Adam which adds eps to the UNcorrected root (Keras, TF's ApplyAdam:
    lr_t * m / (sqrt(v) + eps')) take torch's step lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps):
    eps' = eps * sqrt(1 - beta2^t), t = 1, 2, ..."""
    return eps * math.sqrt(1.0 - beta2**t)


def dampening_scale(dampening: float, t: int) -> float:
    """What to scale the gradient by for a momentum without dampening (Keras, optax's trace,
    TF's ApplyMomentum) to equal torch's: v = g at t = 1 (undamped), v = mu*v + (1-d)*g after."""
    return 1.0 if t == 1 else 1.0 - dampening


def velocity_rescale(lr: float, previous_lr: float | None) -> float:
    """Keras' SGD keeps m = mu*m - lr*g (m = -lr * torch's v while lr is constant). When a
    schedule changes lr, scaling m by lr / previous_lr before the step keeps m = -lr * v.
    After a step at lr 0, m has lost torch's v: ValueError (skylark's schedules never give 0;
    optax's and Keras' warmups do)."""
    if previous_lr is None:
        return 1.0
    if previous_lr == 0:
        raise ValueError(f"Keras' SGD velocity holds lr * v, so after a step at lr 0 it cannot "
                         f"continue torch's momentum. Received: a step at lr=0, then lr={lr!r}")
    return lr / previous_lr


def clip_coef(norm: float, max_norm: float) -> float:
    """torch's clip_grad_norm_ factor: min(1, max_norm / (norm + 1e-6))."""
    return min(1.0, max_norm / (norm + CLIP_EPS))


def clip_coefs(norms: list[float], clip: dict) -> list[float]:
    """The factor of each gradient, from each one's 2-norm (computed in its framework's ops):
    torch's clip_grad_norm_ over all of them (one global norm), or over each alone
    (clip["per_tensor"]). Keras' and optax's own clipping divide by max(norm, max_norm)
    without the +1e-6, and Keras' clipnorm is per variable: hence written out."""
    if clip["per_tensor"]:
        return [clip_coef(n, clip["max_norm"]) for n in norms]
    total = math.sqrt(sum(n * n for n in norms))
    return [clip_coef(total, clip["max_norm"])] * len(norms)
