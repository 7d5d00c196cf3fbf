"""The one interface every framework is driven through, and `get_runner` to obtain one.

    runner = get_runner("torch")
    runner.setup(spec, model.params(), "float64", (1, 28, 28))
    tensors = runner.collect(x, labels, cotangent)     # skylark layout and names
    runner.train_setup(lr=0.1, momentum=0.9); loss = runner.train_step(x, labels)

Every runner takes x as NCHW (skylark's layout) and returns everything in skylark's layout and
names; the conversions happen inside (reference.transfer). The names `collect` returns:

    out.{i}                       layer i's output, i = 0 .. L-1 (out.{L-1} are the logits)
    loss                          mean softmax cross-entropy (a 0-d array)
    {p}/d.out.{i}, {p}/d.{name}, {p}/d.input   gradients for pass p:
        p = "loss": backpropagated from the mean loss;
        p = "cot":  from the given random cotangent on the logits (sum-of-outputs checks are blind
                    to permutations, PITFALLS.md #7).

`plant=` (get_runner's keyword) is a TEST-ONLY hook that injects a known bug so the checker's
tests can prove it fails loudly: "dense_hwc" (Keras/TF dense rows copied in CHW order),
"kernel_transposed" (conv kernels with kh and kw swapped), "loss_sum" (the loss summed over the
batch instead of averaged), "pool_last_max" (torch only: max-pool ties sent to the LAST maximum
of the window instead of the first). Never use it for anything else.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile

import numpy as np

import skylark as sk

from .spec import flat_sources, param_shapes, shapes

FRAMEWORKS = ("numpy", "torch", "tf", "keras", "keras-tensorflow", "keras-torch", "keras-jax")
PLANTS = ("dense_hwc", "kernel_transposed", "loss_sum", "pool_last_max")
KERAS_BACKENDS = {"keras-tensorflow": "tensorflow", "keras-torch": "torch", "keras-jax": "jax"}

_INSTALL = {
    "torch": "pip install torch (the CPU build: pip install torch --index-url "
             "https://download.pytorch.org/whl/cpu)",
    "tensorflow": "pip install 'skylark[tensorflow]'",
    "keras": "pip install 'skylark[keras]'",
    "jax": "pip install 'skylark[jax]'",
}


# absl's pre-initialisation INFO lines ("I0000 00:00:... port.cc:153] oneDNN custom operations are
# on ...") and the warning that announces them.
_NATIVE_INFO = re.compile(r"^(I\d{4} \d\d:\d\d:\S+ +\d+ \S+:\d+\] |WARNING: All log messages "
                          r"before absl::InitializeLog\(\) is called)")


@contextlib.contextmanager
def quiet_native_logs():
    """Drop the native INFO lines TensorFlow writes to fd 2 while it is imported.

    TF_CPP_MIN_LOG_LEVEL=2 (set before the import, below) silences TF's own logging, but TF 2.21
    logs its start-up lines through absl before absl's logging is initialised, which ignores it
    (measured: `TF_CPP_MIN_LOG_LEVEL=3 python -c "import tensorflow"` still prints four "I0000"
    lines). So fd 2 goes to a temporary file for the import and everything else written there
    (warnings, errors, a traceback's cause) is copied back to stderr afterwards.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines(True)
                    if not _NATIVE_INFO.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class FrameworkUnavailable(RuntimeError):
    """A framework that cannot run here; `.framework` is its name, `.reason` says how to fix it."""

    def __init__(self, framework: str, reason: str) -> None:
        super().__init__(f"{framework}: {reason}")
        self.framework = framework
        self.reason = reason


def require(framework: str, *modules: str) -> None:
    """Raise FrameworkUnavailable unless every module is installed (found, not imported)."""
    for mod in modules:
        if importlib.util.find_spec(mod) is None:
            raise FrameworkUnavailable(framework, f"{mod} is not installed: {_INSTALL[mod]}")


class Runner:
    """A model in one framework, built from a skylark spec and skylark-layout parameters.

    Subclasses implement `_build`, `collect`, `train_step`, `predict`, `get_params`; `setup`
    may be called again to rebuild with another spec, dtype or parameters.
    """

    name: str = "?"

    def __init__(self, plant: str | None = None) -> None:
        if plant is not None and plant not in PLANTS:
            raise ValueError(f"plant must be None or one of {PLANTS}. Received: plant={plant!r}")
        self.plant = plant
        self.spec: list[dict] | None = None

    def __repr__(self) -> str:
        planted = f" PLANTED {self.plant}" if self.plant else ""
        return f"<{type(self).__name__} {self.name!r}{planted}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__, "skylark": sk.__version__}

    def setup(self, spec: list[dict], params: dict[str, np.ndarray], dtype: str, input_shape):
        """Build the model for (C, H, W) inputs and load `params` (skylark layout and names)."""
        dtype = np.dtype(dtype).name
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64. Received: dtype={dtype!r}")
        spec = [dict(s) for s in spec]
        out_shapes = shapes(spec, input_shape)  # validates the stack
        if not spec or len(out_shapes[-1]) != 1:
            raise ValueError(
                "the model must end in flat logits (N, K) for the cross-entropy loss. Received: "
                f"final output shape {out_shapes[-1] if spec else None}"
            )
        self.spec, self.dtype, self.input_shape = spec, dtype, tuple(int(d) for d in input_shape)
        self.out_shapes = out_shapes
        self.flat_sources = flat_sources(spec, self.input_shape)
        self.param_names = list(param_shapes(spec))
        self._build({k: np.asarray(v) for k, v in params.items()})

    def _check_setup(self) -> None:
        if self.spec is None:
            raise RuntimeError(f"{self.name}: call setup(spec, params, dtype, input_shape) first")

    def _check_batch(self, x, labels=None, cotangent=None):
        self._check_setup()
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(
                f"{self.name}: x must be NCHW with (C, H, W) = {self.input_shape}. "
                f"Received: shape {x.shape}"
            )
        out = [x]
        if labels is not None:
            labels = np.asarray(labels).astype(np.int64)
            if labels.shape != (x.shape[0],):
                raise ValueError(
                    f"labels must have shape ({x.shape[0]},). Received: {labels.shape}"
                )
            out.append(labels)
        if cotangent is not None:
            cotangent = np.asarray(cotangent, dtype=self.dtype)
            want = (x.shape[0], *self.out_shapes[-1])
            if cotangent.shape != want:
                raise ValueError(f"cotangent must have shape {want}. Received: {cotangent.shape}")
            out.append(cotangent)
        return out

    def _build(self, params: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def collect(self, x, labels, cotangent) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def train_setup(self, lr: float, momentum: float = 0.0) -> None:
        """SGD with torch's semantics: v = momentum*v + g (v = g at first), p -= lr*v."""
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a positive number. Received: lr={lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum!r}")
        self._check_setup()
        self.lr, self.momentum = float(lr), float(momentum)
        self._train_setup()

    def _train_setup(self) -> None:
        raise NotImplementedError

    def train_step(self, x, labels) -> float:
        raise NotImplementedError

    def predict(self, x) -> np.ndarray:
        raise NotImplementedError

    def get_params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NumpyRunner(Runner):
    """skylark itself: the reference every other framework is compared against."""

    name = "numpy"

    def _build(self, params):
        from .spec import build

        self.model = build(self.spec, self.dtype)
        self.model.load_params(params)
        self.optimizer = None

    def collect(self, x, labels, cotangent):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        out, h = {}, x
        for i, layer in enumerate(self.model):
            h = layer.forward(h)
            out[f"out.{i}"] = np.array(h)
        loss, dz = sk.softmax_cross_entropy(h, labels)
        if self.plant == "loss_sum":  # planted bug, tests only
            loss, dz = loss * len(x), dz * len(x)
        out["loss"] = np.asarray(loss)
        for tag, g in (("loss", dz), ("cot", cot)):
            self.model.zero_grad()
            for i in reversed(range(len(self.model))):
                out[f"{tag}/d.out.{i}"] = np.array(g)
                g = self.model[i].backward(g)
            out[f"{tag}/d.input"] = np.array(g)
            for k, v in self.model.grads().items():
                out[f"{tag}/d.{k}"] = np.array(v)
        return out

    def _train_setup(self):
        self.optimizer = sk.SGD(self.model, self.lr, self.momentum)

    def train_step(self, x, labels):
        x, labels = self._check_batch(x, labels)
        if getattr(self, "optimizer", None) is None:
            raise RuntimeError("numpy: call train_setup(lr, momentum) first")
        from skylark.train import train_step

        return train_step(self.model, self.optimizer, x, labels)[0]

    def predict(self, x):
        (x,) = self._check_batch(x)
        return np.array(self.model.forward(x))

    def get_params(self):
        self._check_setup()
        return {k: np.array(v) for k, v in self.model.params().items()}


def get_runner(name: str, plant: str | None = None) -> Runner:
    """A fresh runner for framework `name` (one of FRAMEWORKS).

    ValueError on an unknown name; FrameworkUnavailable when its libraries are not installed.
    `keras-<backend>` starts a worker subprocess (a few seconds); reuse the runner, and close() it.
    `plant` is the test-only bug-injection hook described in the module docstring.
    """
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown framework. Expected one of {FRAMEWORKS}. Received: {name!r}")
    if plant == "pool_last_max" and name != "torch":
        raise ValueError(f"plant pool_last_max exists for torch only. Received: {name!r}")
    if name == "numpy":
        return NumpyRunner(plant)
    if name == "torch":
        require(name, "torch")
        from .torch_ref import TorchRunner

        return TorchRunner(plant)
    if name == "tf":
        require(name, "tensorflow")
        with quiet_native_logs():
            from .tf_ref import TFRunner

        return TFRunner(plant)
    if name == "keras":
        require(name, "keras")
        with quiet_native_logs():
            from .keras_ref import KerasRunner

        return KerasRunner(plant)
    backend = KERAS_BACKENDS[name]
    require(name, "keras", backend)
    from .worker import SubprocessRunner

    return SubprocessRunner(name, backend, plant)
