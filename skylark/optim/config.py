"""An optimizer as a JSON-able dict (what checkpoints record and the references receive), with
torch's argument names and defaults, and the optimizer built from it."""

from __future__ import annotations

from .adam import Adam, AdamW
from .checks import check_positive
from .rmsprop import RMSprop
from .sgd import SGD

OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}

# Each optimizer's options and torch's defaults for them.
OPTIONS = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                "centered": False},
}

# skylark's default learning rates (torch has none for SGD; its Adam's is 1e-3, RMSprop's 1e-2,
# which is large for these nets: 1e-3 here).
DEFAULT_LR = {"sgd": 0.2, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}


def optimizer_config(name: str = "sgd", lr: float | None = None, **given) -> dict:
    """{"name", "lr", and every option of that optimizer}: torch's defaults where an option is
    not given (None counts as not given). ValueError, naming the value, for an unknown
    optimizer, an option it does not take, or a bad value (checked by building it)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}. "
                         f"Received: optimizer={name!r}")
    given = {k: v for k, v in given.items() if v is not None}
    foreign = sorted(set(given) - set(OPTIONS[name]))
    if foreign:
        takers = sorted(n for n, o in OPTIONS.items() if foreign[0] in o)
        where = f"it applies to {', '.join(takers)}" if takers else "no optimizer takes it"
        raise ValueError(f"{name} does not take {foreign[0]} ({where}). "
                         f"Received: optimizer={name!r}, {foreign[0]}={given[foreign[0]]!r}")
    config = {"name": name, "lr": float(DEFAULT_LR[name] if lr is None else lr),
              **OPTIONS[name], **given}
    if "betas" in config:
        config["betas"] = list(config["betas"]) if _pair(config["betas"]) else config["betas"]
    build_optimizer(None, config)  # every value checked once, here
    return _plain(config)


def build_optimizer(model, config: dict):
    """The optimizer of `config` (optimizer_config's dict) over `model`'s parameters."""
    options = {k: v for k, v in config.items() if k != "name"}
    if "betas" in options:
        options["betas"] = tuple(options["betas"]) if _pair(options["betas"]) \
            else options["betas"]
    return OPTIMIZERS[config["name"]](model, **options)


def clip_config(max_norm: float | None, per_tensor: bool = False) -> dict | None:
    """{"max_norm", "per_tensor"}, or None for no clipping."""
    if max_norm is None:
        if per_tensor:
            raise ValueError("per-tensor clipping needs a max norm. Received: clip_norm=None")
        return None
    return {"max_norm": check_positive("clip_norm", max_norm), "per_tensor": bool(per_tensor)}


def describe(config: dict, short: bool = False) -> str:
    """`adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, ...)`: one line for tables and plots;
    `short`: lr and the options that differ from torch's defaults only."""
    defaults = OPTIONS[config["name"]]
    opts = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}"
                     for k, v in config.items() if k != "name" and not (
                         short and k in defaults and _plain({k: defaults[k]})[k] == v))
    return f"{config['name']}({opts})"


def _pair(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2


def _plain(config: dict) -> dict:
    """Python floats and bools (a numpy scalar would not survive JSON)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, bool) or k == "name":
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [float(x) for x in v]
        else:
            out[k] = float(v)
    return out
