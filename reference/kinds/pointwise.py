"""`Pointwise`: the float32 budget rule of an element-wise activation that is not exact in
float32 and whose derivative is computed from its input x (relu6's siblings and the gated
activations: reference.kinds.hard, reference.kinds.gated).

Stated per kind, each with its derivation beside the number:

- `lipschitz` L >= max |f'|: an error already in x leaves f scaled by at most L, and
  `offset`: |f(x)| <= L |x| + offset, so M(y) = L * M(x) + offset bounds both y and the error
  carried into it (reference.budgets).
- `evaluation` E: each library computes f(x) within E * eps32 * M(y) of the exact value (its
  own roundings and its exp/erf/tanh's few ulps), so two of them are within 2E eps32 M =
  K_SAFETY * E * eps32 * M: the forward adds E to n_reduce, as reference.kinds.activations
  _Smooth does.
- `grad_evaluation` G: each library computes f'(x) * g within G * eps32 * L * |g| of the
  exact value: the input gradient adds G (its bound is M(g_in) = L * |g|).
- `curved`: f' varies with x (|f''| <= 1 for every kind here), so the error already in x
  (n_in * m_in) moves f'(x) too: the input gradient adds n_in * max(1, m_in), as _Smooth does.

A kink (relu6's 0 and 6, the hard functions' +-3) is not covered, as ReLU's is not: an input
that two frameworks round to different sides of it is a real divergence, reported as one.
"""

from __future__ import annotations

from .base import Kind


class Pointwise(Kind):
    """An element-wise activation with the budget rule of the module docstring."""

    lipschitz = 1.0
    offset = 0.0
    evaluation = 0
    grad_evaluation = 0
    curved = True

    def grad_count(self, s) -> float:
        """G for this spec entry (a kind whose options change it overrides this)."""
        return self.grad_evaluation

    def f32_forward(self, s, g, batch):
        return self.evaluation

    def f32_abs_forward(self, s, abs_layer, real_layer, a):
        return a * self.lipschitz + self.offset

    def f32_backward(self, s, g, abs_layer, real_layer, c):
        n = c.n + self.grad_count(s)
        if self.curved:
            n += c.n_in * max(1.0, c.m_in)
        return g * self.lipschitz, n, {}
