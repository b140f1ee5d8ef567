"""Metrics of conditional generation and of translation between domains (pure functions).

- `conditional_accuracy`: share of samples the classifier assigns to the class they were
  generated for. Its ceiling is the classifier's accuracy on held-out real images.
- `per_class_fid`: intra-FID (Miyato & Koyama 2018, sec. 5): FID computed within each class,
  generated class-c samples against real class-c images, so a generator that draws good digits
  of the wrong class scores badly even when the pooled FID is fine.
- `label_preservation`: for a translation A -> B, the share of translated images the domain-B
  classifier gives the source image's label (CyCADA, Hoffman et al. 2018, measures the same
  thing as "semantic consistency"). Chance is 1 / num_classes.
- `cycle_l1`: mean absolute error |F(G(a)) - a| per pixel, in the images' own [-1, 1] range.
"""

from __future__ import annotations

import numpy as np

from ganlab.metrics.fid import fid


def _labels(probs_or_labels: np.ndarray) -> np.ndarray:
    p = np.asarray(probs_or_labels)
    return p.argmax(axis=1) if p.ndim == 2 else p.astype(np.int64)


def conditional_accuracy(probs: np.ndarray, requested: np.ndarray) -> float:
    """Share of samples whose predicted class (argmax of `probs` (N, C), or labels (N,))
    equals the class requested from the generator."""
    pred, req = _labels(probs), np.asarray(requested).astype(np.int64)
    if pred.shape != req.shape or pred.size == 0:
        raise ValueError(f"need as many predictions as requested labels, got {pred.shape}/{req.shape}")
    return float((pred == req).mean())


def per_class_accuracy(probs: np.ndarray, requested: np.ndarray, num_classes: int) -> list[float]:
    pred, req = _labels(probs), np.asarray(requested).astype(np.int64)
    return [float((pred[req == c] == c).mean()) if np.any(req == c) else float("nan")
            for c in range(num_classes)]


def per_class_fid(gen_feats: np.ndarray, gen_labels: np.ndarray, ref_feats: np.ndarray,
                  ref_labels: np.ndarray, num_classes: int, n_per_class: int | None = None
                  ) -> list[float]:
    """FID of class c's generated features against class c's reference features, per class.

    With `n_per_class`, each class uses its first n generated samples, so every class (and a
    floor computed the same way) is scored at the same N: FID is biased upwards at small N.
    """
    gen_labels, ref_labels = np.asarray(gen_labels), np.asarray(ref_labels)
    out = []
    for c in range(num_classes):
        g = gen_feats[gen_labels == c]
        r = ref_feats[ref_labels == c]
        if n_per_class is not None:
            if len(g) < n_per_class:
                raise ValueError(f"class {c}: {len(g)} samples, fewer than n_per_class={n_per_class}")
            g = g[:n_per_class]
        out.append(fid(g, r))
    return out


def label_preservation(target_probs: np.ndarray, source_labels: np.ndarray) -> float:
    """Share of translated images classified (by the target domain's classifier) as the label
    of the image they were translated from."""
    return conditional_accuracy(target_probs, source_labels)


def cycle_l1(images: np.ndarray, reconstructed: np.ndarray) -> float:
    """Mean |x - F(G(x))| per pixel."""
    a, b = np.asarray(images, dtype=np.float64), np.asarray(reconstructed, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.abs(a - b).mean())

