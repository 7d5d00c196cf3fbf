"""ONNX Runtime as a forward-only reference: the spec as an ONNX graph
(reference.runners.onnx_graph, one `onnx` builder per kind), run by onnxruntime's CPU provider.

It computes every layer output, the loss and, in training mode, the updated running statistics
(BatchNorm's batch statistics and the dropout keep-masks are graph inputs and ops, see
reference.runners.onnx_graph); it has no gradients and cannot train, which its `supports_gradients`
flag says, so `skylark check` reports its gradients as not computed and `skylark compare` runs
it on the trained weights of numpy for predictions only.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from ..kinds import require_builders
from ..transfer import to_onnx
from .onnx_graph import build_onnx_model
from .runner import Runner, name_tensors

require_builders("onnx")


def inference_session(model, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session for `model` (a ModelProto, its bytes, or a file path)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    opts.log_severity_level = 3  # errors only: no start-up chatter on stderr
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class OnnxRunner(Runner):
    name = "onnxruntime"
    supports_gradients = False

    def versions(self):
        return {**super().versions(), "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                "onnx_float64": "Conv, AveragePool, GlobalAveragePool via Pad/Slice/Einsum/"
                                "ReduceMean" if self.dtype == "float64" else "standard ops"}

    def _build(self, params):
        self.state = to_onnx(params, self.spec)
        self.sessions: dict = {}

    def _session(self, kind: str, training: bool = False):
        """The session for a full trace ("trace", per mode) or the logits ("logits")."""
        key = (kind, training)
        if key not in self.sessions:
            self.sessions[key] = inference_session(build_onnx_model(
                self.spec, self.state, self.dtype, self.input_shape, outputs=kind,
                training=training, loss=self.loss))
        return self.sessions[key]

    def trace(self, x, labels, cotangent, *, training=True, masks=None):
        """The forward tensors only (no gradient: the cotangent is checked, then unused)."""
        x, labels, _ = self._check_batch(x, labels, cotangent)
        masks = self._check_masks(masks, len(x), training)
        sess = self._session("trace", training)
        feeds = {"x": x, "labels": labels, **{f"mask.{i}": m for i, m in masks.items()}}
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
        outs = [got[f"out.{i}"] for i in range(len(self.spec))]
        stats = {k[len("stat."):]: v for k, v in got.items() if k.startswith("stat.")}
        return name_tensors(outs, got["loss"], {}, stats, self.node_names)

    def predict(self, x):
        (x,) = self._check_batch(x)
        return self._session("logits").run(None, {"x": x})[0]

    def get_params(self):
        self._check_setup()
        return {k: np.array(v) for k, v in self.state.items()}

    def _train_setup(self):
        raise NotImplementedError("onnxruntime is forward-only: it computes no gradients and "
                                  "cannot train (Runner.supports_gradients is False)")

    def train_step(self, x, labels, *, masks=None, lr=None):
        self._train_setup()
