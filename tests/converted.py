"""Files other tools write, made in a temporary folder for the import tests (and verify-port):
torch modules through torch.onnx.export, Keras models through tf2onnx, torchvision's models.

    path = torch_to_onnx(module, (3, 64, 64), tmp_path / "net.onnx")          # dynamo exporter
    path = torch_to_onnx(module, (3, 64, 64), tmp_path / "net.onnx", dynamo=False)   # legacy
    path = keras_to_onnx(model, tmp_path / "net.onnx")                         # NHWC input "x"
    models = torchvision_models()                              # construct with weights=None

Every exporter warns (deprecations, its own progress lines): silenced here, since the suite
turns warnings into errors and these are not ours.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings


def torch_to_onnx(module, input_shape, path, *, dynamo: bool = True, batch: int = 2,
                  opset: int = 18, dtype=None):
    """`module` (in eval mode) exported for (batch, *input_shape) inputs; returns `path`."""
    import torch

    module = module.eval()
    x = torch.zeros((batch, *input_shape), dtype=dtype or torch.float32)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=dynamo, opset_version=opset,
                          input_names=["x"], output_names=["logits"])
    return path


def keras_to_onnx(model, path, opset: int = 17):
    """A Keras model (NHWC input) through tf2onnx: its tf.function traced, the Keras 3 path of
    tf2onnx (`from_keras`) fails on Keras 3's tensor names. Input "x" (None, H, W, C)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf2onnx

    sig = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="x")]
    fn = tf.function(lambda x: model(x, training=False), input_signature=sig)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset,
                                      output_path=str(path))
    return path


def torchvision_models():
    """torchvision.models (reference.importers.torchvision_compat: beside a CPU torch)."""
    from reference.importers.torchvision_compat import load

    return load().models
