"""skylark itself as a Runner: the reference every other framework is compared against."""

from __future__ import annotations

import numpy as np

import skylark as sk
from skylark.train import train_step

from .runner import PassGrads, Runner, name_tensors
from .spec import build


class NumpyRunner(Runner):
    name = "numpy"

    def _build(self, params):
        self.model = build(self.spec, self.dtype)
        self.model.load_params(params)
        self.optimizer = None

    def _backward(self, g) -> PassGrads:
        """One backward pass from d loss / d logits `g`, keeping every layer's output gradient."""
        self.model.zero_grad()
        d_outs = [None] * len(self.model)
        for i in reversed(range(len(self.model))):
            d_outs[i] = np.array(g)
            g = self.model[i].backward(g)
        return PassGrads(np.array(g), d_outs,
                         {k: np.array(v) for k, v in self.model.grads().items()})

    def trace(self, x, labels, cotangent):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        outs, h = [], x
        for layer in self.model:
            h = layer.forward(h)
            outs.append(np.array(h))
        loss, dz = sk.softmax_cross_entropy(h, labels)
        if self.plant == "loss_sum":  # planted bug, tests only
            loss, dz = loss * len(x), dz * len(x)
        passes = {"loss": self._backward(dz), "cot": self._backward(cot)}
        return name_tensors(outs, loss, passes)

    def _train_setup(self):
        self.optimizer = sk.SGD(self.model, self.lr, self.momentum)

    def train_step(self, x, labels):
        x, labels = self._check_batch(x, labels)
        if self.optimizer is None:
            raise RuntimeError("numpy: call train_setup(lr, momentum) first")
        return train_step(self.model, self.optimizer, x, labels)[0]

    def predict(self, x):
        (x,) = self._check_batch(x)
        return np.array(self.model.forward(x))

    def get_params(self):
        self._check_setup()
        return {k: np.array(v) for k, v in self.model.params().items()}
