"""The one interface every framework is driven through: `Runner`, and what runners share.

    runner = get_runner("torch")                        # reference.frameworks
    runner.setup(spec, model.state(), "float64", (1, 28, 28), loss={"label_smoothing": 0.1})
    tensors = runner.trace(x, labels, cotangent, training=True, masks=masks)
    runner.train_setup(optimizer=optimizer_config("adam", 1e-3), clip=None)
    loss = runner.train_step(x, labels, masks=masks, lr=1e-3)

`state` is the model's parameters and buffers (BatchNorm running statistics) in skylark's layout
and names. `training` picks the mode of BatchNorm2d and Dropout (train_step always trains,
predict always evaluates); `masks` {layer index: keep-mask of that layer's input shape, NCHW or
flat in skylark's order} is what every dropout layer applies in training, the same in every
framework (reference.inputs.dropout_masks).

Every runner takes x as NCHW (skylark's layout) and returns everything in skylark's layout and
names; the conversions happen inside (reference.transfer). The names `trace` returns:

    out.{n}                       node n's output (n its name: "0" .. "L-1" in a Sequential;
                                  the last node's are the logits)
    loss                          softmax cross-entropy (a 0-d array; mean unless the loss
                                  options say "sum")
    stat.{n}.{buffer}             in training, node n's running statistics after the update
    {p}/d.out.{n}, {p}/d.{name}, {p}/d.input   gradients for pass p (d.out.{n}: the whole
                                  gradient of node n's output, every reader's added):
        p = "loss": backpropagated from the mean loss;
        p = "cot":  from the given random cotangent on the logits (a sum of the outputs, i.e. an
                    all-ones cotangent, is blind to a permutation of the outputs).

`plant=` (get_runner's keyword) is a TEST-ONLY hook that injects a known bug, each one a real
porting trap, so the checker's tests can prove it fails loudly and names the first diverging
tensor. PLANTS maps each to the frameworks it exists for; never use it for anything else.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import re
import sys
import tempfile
from typing import NamedTuple

import numpy as np

import skylark as sk
from skylark.optim import optimizer_config

from ..kinds import KINDS
from ..optim_rules import inexpressible
from ..spec import geometry, param_shapes

_KERAS = ("keras", "keras-tensorflow", "keras-torch", "keras-jax")
PLANTS = {
    # Dense rows copied in CHW order to a framework that flattens HWC
    "dense_hwc": ("tf", *_KERAS),
    # conv kernels with kh and kw swapped
    "kernel_transposed": ("torch", "tf", *_KERAS),
    # the loss summed over the batch instead of averaged
    "loss_sum": ("torch", "tf", *_KERAS),
    # max-pool ties sent to the LAST maximum of the window instead of the first
    "pool_last_max": ("torch",),
    # stock Keras BatchNormalization: the running variance moves with the biased variance
    "keras_bn_biased": _KERAS,
    # torch's BatchNorm momentum passed to Keras unconverted (Keras' is 1 - torch's)
    "keras_bn_momentum": _KERAS,
    # Keras BatchNormalization's default epsilon (1e-3) instead of the model's (torch: 1e-5)
    "keras_bn_eps": _KERAS,
    # BatchNorm's running statistics not copied into Keras (its moving_mean 0, moving_variance 1
    # stay)
    "keras_bn_unloaded": _KERAS,
    # --- optimizer traps (reference.optim_rules): each diverges at a known step ---
    # Keras' Adam as it comes: eps added to the uncorrected root (not adapted per step)
    "keras_adam_eps_uncorrected": _KERAS,
    # Keras' default epsilon (1e-7) instead of the configuration's (torch: 1e-8)
    "keras_adam_default_eps": _KERAS,
    # torch Adam's L2 weight_decay given to Keras' Adam(weight_decay=), which decouples it
    "keras_adam_decoupled_decay": _KERAS,
    # Keras' SGD velocity m = mu*m - lr*g left as it is under a schedule (it holds the old lr)
    "keras_sgd_velocity_holds_lr": _KERAS,
    # Keras' clipnorm (each variable on its own) for a global clip
    "keras_clipnorm_per_variable": _KERAS,
    # Keras' global_clipnorm as it comes: max_norm / max(norm, max_norm), no +1e-6
    "keras_global_clipnorm": _KERAS,
    # optax's rmsprop conventions: eps inside the root; decay 0.9 (torch's alpha: 0.99)
    "jax_rmsprop_eps_in_sqrt": ("jax",),
    "jax_rmsprop_default_decay": ("jax",),
    # the first momentum buffer dampened too (torch copies the first gradient undamped)
    "jax_dampened_first_step": ("jax",),
    # optax's amsgrad as it comes: the max of bias-CORRECTED second moments
    "jax_amsgrad_corrected_max": ("jax",),
    # optax.linear_schedule's warmup, from 0 (skylark's and torch's LinearLR: from lr/warmup)
    "jax_warmup_from_zero": ("jax",),
    # AdamW's decay without the learning rate: p <- p * (1 - weight_decay)
    "tf_adamw_decay_without_lr": ("tf",),
    # Keras' hyperparameters as Python floats: on the TensorFlow backend ops.cast(0.9, float64)
    # rounds through float32, so a float64 run trains with float32-rounded lr, betas, momentum
    "keras_float32_hyperparameters": ("keras", "keras-tensorflow"),
    # a per-epoch schedule stepped every iteration (torch's scheduler.step() in the batch loop)
    "torch_schedule_per_iteration": ("torch",),
    # Keras LeakyReLU's default slope (0.3) instead of the model's (torch: 0.01)
    "keras_leaky_default": _KERAS,
    # average pooling at padded borders divided by the other count (count_include_pad flipped)
    "torch_avg_divisor": ("torch",),
    # TF's "same" padding (odd pixel bottom/right) done as torch's symmetric padding
    "torch_same_symmetric": ("torch",),
    # ShuffleNet's NCHW channel shuffle (reshape (N, g, C/g, H, W), swap 1 and 2) run on NHWC
    "keras_shuffle_nchw": _KERAS,
    # a channel concat done on NCHW memory and reshaped (not transposed) back to NHWC
    "keras_concat_nchw_memory": _KERAS,
    # the residual added after the block's ReLU instead of before it
    "torch_residual_after_relu": ("torch",),
    # ReLU6 ported as a ReLU (no clipping at 6)
    "keras_relu6_as_relu": _KERAS,
    # a squeeze-excite gate reshaped to (N, C, 1, 1) on an NHWC map (broadcasts when H == C)
    "keras_se_gate_nchw": _KERAS,
    # AdaptiveAvgPool2d ported as a fixed-stride average pool (other bins where H % out != 0)
    "keras_adaptive_as_avgpool": _KERAS,
    # torch's ZeroPad2d (left, right, top, bottom) read as Keras' ((top, bottom), (left, right))
    "keras_zeropad_torch_order": _KERAS,
    # Rescaling's constants as Python floats: Keras-TF casts them to float64 through float32
    "keras_rescaling_python_floats": ("keras", "keras-tensorflow"),
}

# absl's pre-initialisation INFO lines ("I0000 00:00:... port.cc:153] oneDNN custom operations are
# on ...") and the warning that announces them: noise to drop from a framework's stderr.
NATIVE_INFO = re.compile(r"^(I\d{4} \d\d:\d\d:\S+ +\d+ \S+:\d+\] |WARNING: All log messages "
                         r"before absl::InitializeLog\(\) is called)")


# TensorFlow's CUDA probe where there is no GPU: "E0000 00:00:... cuda_platform.cc:52] failed
# call to cuInit: INTERNAL: CUDA error: ... UNKNOWN ERROR (303)", once per process, at its first
# device use. Dropped only on a machine with no GPU device (gpu_device_present); where a GPU
# exists the same line is a real problem and is shown.
CUDA_NOISE = re.compile(r"^E\d{4} \d\d:\d\d:\S+ +\d+ \S+:\d+\] failed call to cuInit")


def gpu_device_present() -> bool:
    """Whether this machine has a GPU device node: NVIDIA's /dev/nvidia*, WSL's /dev/dxg, or
    ROCm's /dev/kfd."""
    return bool(glob.glob("/dev/nvidia*")) or any(os.path.exists(p) for p in ("/dev/dxg",
                                                                               "/dev/kfd"))


def native_noise(line: str, gpu: bool) -> bool:
    """Whether a line a framework wrote to fd 2 is start-up noise to drop: absl's INFO lines
    always; the failed cuInit only when `gpu` is False (no GPU device here)."""
    return bool(NATIVE_INFO.match(line) or (not gpu and CUDA_NOISE.match(line)))


@contextlib.contextmanager
def quiet_native_logs():
    """Drop the native INFO lines TensorFlow writes to fd 2 while it is imported.

    TF_CPP_MIN_LOG_LEVEL=2 (set before the import, below) silences TF's own logging, but TF 2.21
    logs its start-up lines through absl before absl's logging is initialised, which ignores it
    (measured: `TF_CPP_MIN_LOG_LEVEL=3 python -c "import tensorflow"` still prints four "I0000"
    lines). So fd 2 goes to a temporary file for the import and everything else written there
    (warnings, errors, a traceback's cause) is copied back to stderr afterwards.

    TensorFlow probes for CUDA at its first device use, after the import, and on a machine
    without a GPU logs a failed cuInit as an ERROR (CUDA_NOISE). So the devices are listed here,
    inside the capture, and that one line is dropped when no GPU device exists.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
            tf = sys.modules.get("tensorflow")
            if hasattr(tf, "config"):
                tf.config.list_physical_devices()  # the CUDA probe, while fd 2 is captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            gpu = gpu_device_present()
            kept = [line for line in tmp.read().decode(errors="replace").splitlines(True)
                    if not native_noise(line, gpu)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class FrameworkUnavailable(RuntimeError):
    """A framework that cannot run here; `.framework` is its name, `.reason` says how to fix it."""

    def __init__(self, framework: str, reason: str) -> None:
        super().__init__(f"{framework}: {reason}")
        self.framework = framework
        self.reason = reason


def require_installed(framework: str, modules, install: str) -> None:
    """Raise FrameworkUnavailable unless every module is installed (found, not imported)."""
    for mod in modules:
        if importlib.util.find_spec(mod) is None:
            raise FrameworkUnavailable(framework, f"{mod} is not installed: {install}")


def loss_options(loss: dict | None) -> dict:
    """softmax_cross_entropy's options, checked: label_smoothing (0) and reduction ("mean")."""
    out = {"label_smoothing": 0.0, "reduction": "mean", **(loss or {})}
    if set(out) != {"label_smoothing", "reduction"}:
        raise ValueError("loss options are label_smoothing and reduction. "
                         f"Received: {sorted(loss)}")
    sk.softmax_cross_entropy(np.zeros((1, 2)), np.zeros(1, int), **out)  # validates both
    out["label_smoothing"] = float(out["label_smoothing"])
    return out


class PassGrads(NamedTuple):
    """One backward pass of a framework, already in skylark's layout and names."""

    d_input: np.ndarray
    d_outs: list  # d loss / d out.i for every layer i
    d_params: dict[str, np.ndarray]  # skylark parameter name -> gradient


def name_tensors(outs, loss, passes: dict[str, PassGrads], stats=None,
                 names=None) -> dict[str, np.ndarray]:
    """The `trace` dict: every runner builds it here, so every runner names tensors alike.
    `stats`: updated buffers by skylark name ("2.running_mean"); `names`: the nodes' names
    (reference.spec.node_names; default "0", "1", ...), which name the outputs."""
    names = [str(i) for i in range(len(outs))] if names is None else list(names)
    result = {f"out.{n}": np.asarray(o) for n, o in zip(names, outs, strict=True)}
    result["loss"] = np.asarray(loss)
    result.update({f"stat.{k}": np.asarray(v) for k, v in (stats or {}).items()})
    for tag, p in passes.items():
        result[f"{tag}/d.input"] = np.asarray(p.d_input)
        result.update({f"{tag}/d.out.{n}": np.asarray(g)
                       for n, g in zip(names, p.d_outs, strict=True)})
        result.update({f"{tag}/d.{k}": np.asarray(v) for k, v in p.d_params.items()})
    return result


class NotExpressible(ValueError):
    """The framework's own optimizer cannot compute this configuration as torch's does (the
    message says why); the framework is reported as not expressible, not as failed."""


class Runner:
    """A model in one framework, built from a skylark spec and skylark-layout parameters.

    Subclasses implement `_build`, `trace`, `_train_setup`, `train_step`, `predict`,
    `get_params`; `setup` may be called again to rebuild with another spec, dtype or parameters.
    """

    name: str = "?"
    # The capability flag: False for a forward-only runtime (ONNX Runtime). Its `trace` returns
    # the forward tensors only (layer outputs, loss, running statistics) and it cannot train;
    # the harness reports its gradients as "not computed (forward-only)", never as passed,
    # failed or missing.
    supports_gradients: bool = True

    def __init__(self, plant: str | None = None) -> None:
        if plant is not None and plant not in PLANTS:
            raise ValueError(f"plant must be None or one of {tuple(PLANTS)}. "
                             f"Received: plant={plant!r}")
        self.plant = plant
        self.spec: list[dict] | None = None

    def __repr__(self) -> str:
        planted = f" PLANTED {self.plant}" if self.plant else ""
        return f"<{type(self).__name__} {self.name!r}{planted}>"

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__, "skylark": sk.__version__}

    def setup(self, spec: list[dict], params: dict[str, np.ndarray], dtype: str, input_shape,
              *, loss: dict | None = None):
        """Build the model for (C, H, W) inputs and load `params` (the state: skylark layout
        and names); `loss`: softmax_cross_entropy's options (label_smoothing, reduction)."""
        dtype = np.dtype(dtype).name
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64. Received: dtype={dtype!r}")
        spec = [dict(s) for s in spec]
        geo = geometry(spec, input_shape)  # validates the stack
        if not spec or len(geo[-1].out_shape) != 1:
            raise ValueError(
                "the model must end in flat logits (N, K) for the cross-entropy loss. Received: "
                f"final output shape {geo[-1].out_shape if spec else None}"
            )
        self.spec, self.dtype, self.input_shape = spec, dtype, tuple(int(d) for d in input_shape)
        self.geometry = geo
        self.node_names = [g.name for g in geo]
        self.out_shapes = [g.out_shape for g in geo]
        self.flat_sources = [g.flat_source for g in geo]
        self.param_names = list(param_shapes(spec))
        self.loss = loss_options(loss)
        self.masked = [g.index for s, g in zip(spec, geo, strict=True)
                       if KINDS[s["kind"]].uses_mask]
        self._build({k: np.asarray(v) for k, v in params.items()})

    def _check_setup(self) -> None:
        if self.spec is None:
            raise RuntimeError(f"{self.name}: call setup(spec, params, dtype, input_shape) first")

    def _check_masks(self, masks, n: int, training: bool) -> dict[int, np.ndarray]:
        """The keep-mask of every dropout layer for a training pass, checked; {} in eval."""
        if not training or not self.masked:
            return {}
        masks = dict(masks or {})
        for i in self.masked:
            want = KINDS[self.spec[i]["kind"]].mask_shape(self.spec[i], n,
                                                          self.geometry[i].in_shape)
            if i not in masks or np.shape(masks[i]) != want:
                got = np.shape(masks[i]) if i in masks else None
                raise ValueError(f"{self.name}: dropout layer {i} needs a keep-mask of shape "
                                 f"{want} in training. Received: {got}")
        return {i: np.asarray(masks[i], bool) for i in self.masked}

    def keras_masks(self, masks: dict) -> dict[int, np.ndarray]:
        """Checked keep-masks in Keras' and raw TF's layout: converted like an activation
        (NHWC, or HWC-ordered flat), except a mask whose axes after the batch's are all 1
        (stochastic depth's), which reads the same in every layout."""
        from ..transfer import activation_to_keras

        return {i: m if all(d == 1 for d in m.shape[1:]) else
                activation_to_keras(m, self.geometry[i].in_flat_source)
                for i, m in masks.items()}

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

    def trace(self, x, labels, cotangent, *, training: bool = True,
              masks=None) -> dict[str, np.ndarray]:
        """Every layer output, the loss, the updated running statistics (training) and both
        backward passes (names: module docstring)."""
        raise NotImplementedError

    def train_setup(self, lr: float | None = None, momentum: float = 0.0, *,
                    optimizer: dict | None = None, clip: dict | None = None,
                    schedule: dict | None = None) -> None:
        """The framework's own optimizer, computing torch's step (reference.optim_rules).

        `optimizer`: skylark.optim.optimizer_config's dict (torch's names and defaults); without
        it, SGD with `lr` and `momentum`. `clip`: skylark.optim.clip_config's dict or None.
        `schedule`: the run's skylark.optim.Schedule as a dict; only planted runners read it
        (train_step gets each step's lr). NotExpressible when the framework's optimizer cannot
        compute this configuration as torch does."""
        self._check_setup()
        if optimizer is None:
            optimizer = optimizer_config("sgd", lr, momentum=momentum)
        elif lr is not None and lr != optimizer["lr"]:
            raise ValueError(f"lr given twice: lr={lr!r} and optimizer['lr']="
                             f"{optimizer['lr']!r}. Received: both")
        self.optim = optimizer_config(**optimizer)  # validated, defaults filled
        self.clip, self.schedule = clip, schedule
        self.lr = self.optim["lr"]
        self.momentum = self.optim.get("momentum", 0.0)
        reason = inexpressible(self.name, self.optim)
        if reason:
            raise NotExpressible(f"{self.name}: {reason}")
        self.steps = 0
        self._train_setup()

    def _train_setup(self) -> None:
        raise NotImplementedError

    def train_step(self, x, labels, *, masks=None, lr: float | None = None) -> float:
        """One optimizer step in training mode at learning rate `lr` (the configured one when
        None); returns the loss before the update."""
        raise NotImplementedError

    def predict(self, x) -> np.ndarray:
        raise NotImplementedError

    def get_params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


__all__ = [
    "CUDA_NOISE", "NATIVE_INFO", "PLANTS", "FrameworkUnavailable", "NotExpressible",
    "PassGrads", "Runner",
    "gpu_device_present", "loss_options", "name_tensors", "native_noise", "quiet_native_logs",
    "require_installed",
]
