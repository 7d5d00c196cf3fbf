"""skylark itself as a Runner: the reference every other framework is compared against."""

from __future__ import annotations

import numpy as np

import skylark as sk
from skylark.optim import build_optimizer
from skylark.train import train_step

from ..spec import build
from .runner import PassGrads, Runner, name_tensors


class NumpyRunner(Runner):
    name = "numpy"

    def _build(self, state):
        self.model = build(self.spec, self.dtype)
        self.model.load_state(state)
        self.optimizer = None

    def _backward(self, g) -> PassGrads:
        """One backward pass from d loss / d logits `g`, keeping every node's output gradient
        (at a fan-out: the sum of its readers' gradients)."""
        self.model.zero_grad()
        dx, seen = self.model.backward_all(g)
        d_outs = [np.array(seen[n]) for n in self.node_names]
        return PassGrads(np.array(dx), d_outs,
                         {k: np.array(v) for k, v in self.model.grads().items()})

    def _set_mode(self, training: bool, masks) -> None:
        self.model.train(training)
        for i, mask in masks.items():
            self.model[i].use_mask(mask)

    def trace(self, x, labels, cotangent, *, training=True, masks=None):
        x, labels, cot = self._check_batch(x, labels, cotangent)
        self._set_mode(training, self._check_masks(masks, len(x), training))
        values = self.model.forward_all(x)
        outs = [np.array(values[n]) for n in self.node_names]
        h = values[self.node_names[-1]]
        loss, dz = sk.softmax_cross_entropy(h, labels, **self.loss)
        if self.plant == "loss_sum":  # planted bug, tests only
            loss, dz = loss * len(x), dz * len(x)
        stats = {k: np.array(v) for k, v in self.model.buffers().items()} if training else {}
        passes = {"loss": self._backward(dz), "cot": self._backward(cot)}
        return name_tensors(outs, loss, passes, stats, self.node_names)

    def _train_setup(self):
        self.optimizer = build_optimizer(self.model, self.optim)

    def train_step(self, x, labels, *, masks=None, lr=None):
        x, labels = self._check_batch(x, labels)
        if self.optimizer is None:
            raise RuntimeError("numpy: call train_setup(...) first")
        self._set_mode(True, self._check_masks(masks, len(x), True))
        self.optimizer.lr = self.lr if lr is None else lr
        return train_step(self.model, self.optimizer, x, labels, clip=self.clip, **self.loss)[0]

    def predict(self, x):
        (x,) = self._check_batch(x)
        self.model.eval()
        return np.array(self.model.forward(x))

    def get_params(self):
        """The state (parameters and buffers) in skylark's layout and names."""
        self._check_setup()
        return {k: np.array(v) for k, v in self.model.state().items()}
