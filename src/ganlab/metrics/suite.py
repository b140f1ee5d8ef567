"""All metrics in one call, keyed for metrics files / experiment trackers.

Feature-based metrics carry the extractor name in their key (e.g.
`fid_inception`, `precision_judge`) because values from different feature
spaces are not comparable. Keys whose inputs are not supplied are omitted
rather than set to NaN, so the result always serialises to valid JSON.
"""

from __future__ import annotations

import numpy as np

from ganlab.metrics.classes import class_histogram
from ganlab.metrics.fid import fid
from ganlab.metrics.inception_score import inception_score
from ganlab.metrics.kid import kid
from ganlab.metrics.memorisation import memorisation
from ganlab.metrics.prdc import prdc


def compute_all(
    gen_feats: np.ndarray,
    gen_probs: np.ndarray | None,
    ref_feats: np.ndarray,
    ref_probs: np.ndarray | None,
    *,
    extractor: str,
    train_pixels: np.ndarray | None = None,
    heldout_pixels: np.ndarray | None = None,
    gen_pixels: np.ndarray | None = None,
    num_classes: int | None = None,
    reference_counts: np.ndarray | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    k_pr: int = 3,
    k_dc: int = 5,
    seed: int = 0,
    prdc_seed: int | None = None,
) -> dict[str, float]:
    """Every metric as a flat {name: float} dict.

    Always: `n_generated`, `n_reference`, `n_prdc_real`, `fid_<x>`, `kid_<x>_mean/_std`,
    `precision_<x>`, `recall_<x>`, `density_<x>`, `coverage_<x>`.
    With `gen_probs`: `is_<x>_mean/_std`; plus, with `num_classes`,
    `classes_covered`, `class_kl_uniform`, `class_entropy` and (with
    `reference_counts`) `class_kl_reference`. With all three pixel arrays:
    the `mem_*` keys of `memorisation`. `ref_probs` is accepted for symmetry
    and currently unused (IS is a property of the generated set alone).

    PRDC compares equal counts, as its published protocols do (Kynkäänniemi et al. 2019
    and Naeem et al. 2020 both use equally many real and fake samples): when there are
    more real features than generated ones, a random subset of the real side of the
    generated count is used (seeded by `prdc_seed`, default `seed`, so two generated sets
    scored with the same `prdc_seed` meet the same real subset). `n_prdc_real` records it.
    """
    del ref_probs  # see docstring
    x = extractor
    out: dict[str, float] = {
        "n_generated": float(len(gen_feats)),
        "n_reference": float(len(ref_feats)),
        f"fid_{x}": fid(gen_feats, ref_feats),
    }
    kid_mean, kid_std = kid(
        gen_feats, ref_feats, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    out[f"kid_{x}_mean"] = kid_mean
    out[f"kid_{x}_std"] = kid_std

    prdc_ref = ref_feats
    if len(ref_feats) > len(gen_feats):
        rng = np.random.default_rng(seed if prdc_seed is None else prdc_seed)
        prdc_ref = ref_feats[np.sort(rng.choice(len(ref_feats), len(gen_feats), replace=False))]
    out["n_prdc_real"] = float(len(prdc_ref))
    manifold = prdc(prdc_ref, gen_feats, k_pr=k_pr, k_dc=k_dc)
    for name in ("precision", "recall", "density", "coverage"):
        out[f"{name}_{x}"] = manifold[name]

    if gen_probs is not None:
        is_mean, is_std = inception_score(gen_probs, splits=min(is_splits, len(gen_probs)))
        out[f"is_{x}_mean"] = is_mean
        out[f"is_{x}_std"] = is_std
        if num_classes is not None:
            hist = class_histogram(gen_probs, num_classes, reference_counts=reference_counts)
            out["classes_covered"] = hist["classes_covered"]
            out["class_kl_uniform"] = hist["kl_uniform"]
            out["class_entropy"] = hist["entropy"]
            if "kl_reference" in hist:
                out["class_kl_reference"] = hist["kl_reference"]

    pixels = (gen_pixels, train_pixels, heldout_pixels)
    if all(p is not None for p in pixels):
        out.update(memorisation(gen_pixels, train_pixels, heldout_pixels, seed=seed))
    elif any(p is not None for p in pixels):
        raise ValueError("memorisation needs gen_pixels, train_pixels and heldout_pixels")
    return out
