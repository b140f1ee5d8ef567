"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training
GANs", section 4):

    IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y) = E_x p(y|x)

computed separately on `splits` contiguous chunks of the samples (the
marginal p(y) is estimated per chunk), reporting mean and std over chunks
as in the paper's reference code.
"""

from __future__ import annotations

import numpy as np


def _split_score(p: np.ndarray) -> float:
    py = p.mean(axis=0, keepdims=True)
    # 0·log 0 = 0: evaluate the log only where p > 0. Wherever p(y|x) > 0 the
    # marginal p(y) > 0 too, so no eps is needed anywhere else.
    pos = p > 0
    safe_p = np.where(pos, p, 1.0)
    safe_py = np.where(pos, np.broadcast_to(py, p.shape), 1.0)
    kl = np.where(pos, p * (np.log(safe_p) - np.log(safe_py)), 0.0).sum(axis=1)
    return float(np.exp(kl.mean()))


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the Inception Score of an (N, C) class-probability array."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {p.shape}")
    if splits < 1 or splits > p.shape[0]:
        raise ValueError(f"splits must be in [1, N={p.shape[0]}], got {splits}")
    if np.any(p < 0):
        raise ValueError("probs must be non-negative")
    scores = [_split_score(chunk) for chunk in np.array_split(p, splits)]
    return float(np.mean(scores)), float(np.std(scores))
