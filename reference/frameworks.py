"""The framework table: every implementation skylark is compared against, in one place.

Runners (reference.runners.registry.get_runner), the `--frameworks` option, pytest's markers
(tests/conftest.py), the benchmark and thread pinning all derive from `FRAMEWORKS`. To add a
framework: a row here and its runner module.

    parse_frameworks("torch,tf")     # ["torch", "tf"]: the one meaning of --frameworks
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

_TORCH_CPU = ("pip install torch==2.13.0 before the extras on a machine without a GPU, or pip "
              "can pick a multi-GB CUDA build")


@dataclass(frozen=True)
class Framework:
    """One row of the table."""

    name: str
    modules: tuple[str, ...]  # what must be installed (found, not imported, to decide)
    install: str  # how to install what is missing
    marker: str | None  # pytest marker of the tests that need it
    runner: str | None = None  # "module:Class" of an in-process runner, else a Keras worker
    keras_backend: str | None = None  # the KERAS_BACKEND a worker subprocess is started with
    native_logs: bool = False  # imports TensorFlow: drop its native start-up lines
    threads_env: tuple[str, ...] = ()  # environment variables that size its thread pools
    # a forward-only runtime: its runner's `supports_gradients` is False (it computes no
    # gradient and cannot train); known here so tests and commands can tell before starting it
    forward_only: bool = False

    @property
    def in_process(self) -> bool:
        return self.runner is not None


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (
    Framework("numpy", ("numpy",), "pip install numpy", None,
              "reference.runners.numpy_ref:NumpyRunner"),
    Framework("torch", ("torch",), f"pip install 'skylark[torch]' ({_TORCH_CPU})", "torch",
              "reference.runners.torch_ref:TorchRunner"),
    Framework("tf", ("tensorflow",), "pip install 'skylark[tensorflow]'", "tf",
              "reference.runners.tf_ref:TFRunner", native_logs=True,
              threads_env=("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")),
    Framework("jax", ("jax",), "pip install 'skylark[jax]'", "jax",
              "reference.runners.jax_ref:JaxRunner"),
    Framework("keras", ("keras",), "pip install 'skylark[keras]'", "keras",
              "reference.runners.keras_ref:KerasRunner", native_logs=True),
    Framework("keras-tensorflow", ("keras", "tensorflow"), "pip install 'skylark[keras]'",
              "keras_tensorflow", keras_backend="tensorflow"),
    Framework("keras-torch", ("keras", "torch"), f"pip install 'skylark[keras,torch]' "
              f"({_TORCH_CPU})", "keras_torch", keras_backend="torch"),
    Framework("keras-jax", ("keras", "jax"), "pip install 'skylark[keras,jax]'", "keras_jax",
              keras_backend="jax"),
    # forward only: layer outputs, loss and running statistics, no gradient
    Framework("onnxruntime", ("onnx", "onnxruntime"), "pip install 'skylark[onnx]'",
              "onnxruntime", "reference.runners.onnx_ref:OnnxRunner", forward_only=True),
)}
NAMES = tuple(FRAMEWORKS)
COMPARED = tuple(n for n in NAMES if n != "numpy")  # numpy is the reference


def parse_frameworks(text) -> list[str]:
    """'all' or a comma-separated list -> the frameworks to compare against numpy (numpy, the
    reference, is never in the result; naming only numpy is an error, since nothing would be
    compared). argparse.ArgumentTypeError names the received text."""
    if not isinstance(text, str):  # already a list
        text = ",".join(text)
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return list(COMPARED)
    bad = [n for n in names if n not in FRAMEWORKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or a comma-separated list of {', '.join(NAMES)}. Received: {text!r}"
        )
    kept = [n for n in dict.fromkeys(names) if n != "numpy"]
    if not kept:
        raise argparse.ArgumentTypeError(
            f"numpy is the reference; name at least one other framework. Received: {text!r}"
        )
    return kept


def pin_threads(n: int) -> str:
    """`n` threads for numpy's BLAS (skylark.threads) and for every framework in the table:
    its environment variables (read when it is imported, also by worker subprocesses) and,
    for torch when already imported, torch.set_num_threads. Returns what was done."""
    from skylark.threads import limit_threads

    done = limit_threads(n)
    for fw in FRAMEWORKS.values():
        for var in fw.threads_env:
            os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return done


__all__ = ["COMPARED", "FRAMEWORKS", "NAMES", "Framework", "parse_frameworks", "pin_threads"]
