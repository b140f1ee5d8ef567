"""Class-balance statistics of generated samples (mode coverage / mode
dropping), from a classifier's predicted labels.

Rule for "covered": class c is covered when it is the predicted (argmax)
class of at least `cover_threshold` × N / num_classes samples, i.e. at least
`cover_threshold` of the share it would get under a perfectly uniform
generator. Scaling by the uniform share (rather than a fixed fraction of N)
makes the rule mean the same thing for 10 and for 1000 classes; the default
0.1 ignores a class hit only by a handful of stray samples, which is what
mode dropping looks like in practice (cf. the "number of modes" count of
Metz et al. 2017, Unrolled GANs, which also thresholds per-mode counts).

KLs are in nats, with 0·log 0 = 0.
"""

from __future__ import annotations

import numpy as np


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) for probability vectors; inf if p puts mass where q has none."""
    pos = p > 0
    if np.any(q[pos] <= 0):
        return float("inf")
    return float(np.sum(p[pos] * (np.log(p[pos]) - np.log(q[pos]))))


def class_histogram(
    probs: np.ndarray,
    num_classes: int,
    reference_counts: np.ndarray | None = None,
    cover_threshold: float = 0.1,
) -> dict:
    """Histogram of predicted classes and summary statistics.

    `probs` is (N, C) class probabilities (argmax is taken) or (N,) integer
    labels. Returns a dict with float entries `classes_covered`,
    `kl_uniform` = KL(hist || uniform), `entropy` (nats), `kl_reference` =
    KL(hist || reference) only when `reference_counts` is given (inf if the
    histogram hits a class absent from the reference), and `counts` (list of
    per-class sample counts).
    """
    p = np.asarray(probs)
    labels = p.argmax(axis=1) if p.ndim == 2 else p.astype(np.int64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"expected (N, C) probs or (N,) labels, got shape {p.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"predicted labels fall outside [0, {num_classes})")
    if not 0.0 <= cover_threshold:
        raise ValueError("cover_threshold must be >= 0")

    counts = np.bincount(labels, minlength=num_classes)
    n = labels.size
    hist = counts / n
    min_count = cover_threshold * n / num_classes
    # A class with zero samples is never covered, even at threshold 0.
    covered = int(np.sum((counts >= min_count) & (counts > 0)))
    pos = hist > 0
    entropy = float(-np.sum(hist[pos] * np.log(hist[pos])))
    out: dict = {
        "classes_covered": float(covered),
        # KL to uniform = log C - H(hist).
        "kl_uniform": _kl(hist, np.full(num_classes, 1.0 / num_classes)),
        "entropy": entropy,
        "counts": counts.tolist(),
    }
    if reference_counts is not None:
        ref = np.asarray(reference_counts, dtype=np.float64)
        if ref.shape != (num_classes,) or np.any(ref < 0) or ref.sum() <= 0:
            raise ValueError(
                f"reference_counts must be {num_classes} non-negative counts, got {ref}"
            )
        out["kl_reference"] = _kl(hist, ref / ref.sum())
    return out
