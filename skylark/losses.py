"""softmax_cross_entropy: the loss and its gradient in one stable step."""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, labels) -> tuple[np.floating, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against int class ids, and d loss / d logits.

    logits: (N, K) float; labels: (N,) ints in [0, K). Returns (loss, dlogits (N, K)).
    loss = mean_n [logsumexp(z_n) - z_n[y_n]];  dlogits = (softmax(z) - onehot(y)) / N.
    The 1/N is the batch *mean* (torch's and Keras' default): a sum would scale every gradient
    by N, which a batch of one cannot reveal.
    """
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[0] == 0 or not np.issubdtype(z.dtype, np.floating):
        raise ValueError(
            f"logits must be a non-empty 2-D float array (N, K). "
            f"Received: logits with shape {z.shape} and dtype {z.dtype}"
        )
    y = np.asarray(labels)
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be ints of shape ({z.shape[0]},) to match the logits. "
            f"Received: labels with shape {y.shape} and dtype {y.dtype}"
        )
    k = z.shape[1]
    if y.min() < 0 or y.max() >= k:
        bad = y[(y < 0) | (y >= k)]
        raise ValueError(f"labels must lie in [0, {k}). Received: label={int(bad[0])}")
    finite = np.isfinite(z)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise FloatingPointError(
            f"non-finite logits (nan or inf) in {rows.size} of {z.shape[0]} rows, first at row "
            f"{rows[0]}: the model has diverged (lower the learning rate?). "
            f"Received: logits[{rows[0]}]={z[rows[0]]}"
        )
    n = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)  # stable: exp never sees a positive number
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(n)
    loss = (log_sum - shifted[rows, y]).mean()
    dz = np.exp(shifted - log_sum[:, None])
    dz[rows, y] -= 1
    dz /= n
    return loss, dz
