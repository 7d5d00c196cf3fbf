"""`module:function`: what a user names on the command line to give a model as Python code."""

from __future__ import annotations

import importlib


def call_function(text: str):
    """What `module:function` (or `module:Class`, `module:a.b`) returns, called with no
    arguments; ValueError naming `text` when it cannot be imported or called."""
    module, _, name = text.partition(":")
    try:
        if module.split(".")[0] == "torchvision":
            from .torchvision_compat import load

            load()  # beside a CPU torch (its docstring)
        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import the model function {text!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"{text} must name a function or class. Received: {type(fn)!r}")
    try:
        return fn()
    except Exception as e:  # the user's code: say what it raised, in one line
        why = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"{text}() raised {type(e).__name__}: {why} (it is called with no "
                         f"arguments). Received: {text!r}") from None
