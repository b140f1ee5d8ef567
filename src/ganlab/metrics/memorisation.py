"""Training-set memorisation check in pixel space.

For every generated sample we take the Euclidean distance to its nearest
training image (d_tr) and to its nearest held-out image (d_te); both sets are
drawn from the same distribution, so a generator that has not seen the
training images in particular has d_tr ≈ d_te, while one that reproduces
training images has d_tr ≪ d_te. This is the nearest-neighbour comparison
behind the data-copying tests of Meehan et al. 2020 ("A Non-Parametric Test
to Detect Data-Copying in Generative Models"), reduced to a per-sample ratio.

Rules (simple and documented on purpose):
* a sample is a *copy* if d_tr / d_te < `copy_ratio` (default 0.5: it is at
  least twice as close to some training image as to any unseen image);
* the generator is *flagged* if the fraction of copies exceeds
  `flag_fraction` (default 0.1).

Nearest-neighbour distances shrink as the reference set grows, so the
ratio is only fair when both sets have the same size: a larger training set
is subsampled (without replacement, seeded rng) to the held-out size.
Caveat: subsampling also dilutes detection of verbatim copies, since only
copies of the kept training images match exactly: a pure copier of a training
set K times the held-out size shows a copy fraction of about 1/K. Pass
`match_sizes=False` to search the whole training set instead (every copy is
found, at the price of d_tr being biased low for honest generators).
"""

from __future__ import annotations

import numpy as np

from ganlab.metrics.prdc import nearest_distances


def _flatten(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x)
    return arr.reshape(arr.shape[0], -1)


def memorisation(
    gen: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray,
    chunk: int = 2048,
    copy_ratio: float = 0.5,
    flag_fraction: float = 0.1,
    seed: int = 0,
    match_sizes: bool = True,
) -> dict[str, float]:
    """Memorisation summary of generated images against train / held-out images.

    Returns `mem_ratio_median` (median d_tr/d_te; ≈1 for a non-copying
    generator, ≪1 for a copier), `mem_frac_copies`, `mem_flagged` (1.0/0.0),
    and the medians `mem_dist_train_median`, `mem_dist_heldout_median`.
    """
    g, tr, te = _flatten(gen), _flatten(train), _flatten(heldout)
    if not g.shape[1] == tr.shape[1] == te.shape[1]:
        raise ValueError(f"pixel dims differ: {g.shape}, {tr.shape}, {te.shape}")
    if min(len(g), len(tr), len(te)) == 0:
        raise ValueError("gen, train and heldout must all be non-empty")
    if match_sizes and len(tr) > len(te):
        idx = np.random.default_rng(seed).choice(len(tr), size=len(te), replace=False)
        tr = tr[np.sort(idx)]

    d_tr = nearest_distances(g, tr, chunk=chunk)
    d_te = nearest_distances(g, te, chunk=chunk)
    # d_te == 0 means the sample equals a held-out image; the tiny floor keeps
    # the ratio finite (a simultaneous exact train match still reads as a copy).
    ratio = d_tr / np.maximum(d_te, 1e-12)
    frac_copies = float(np.mean(ratio < copy_ratio))
    return {
        "mem_ratio_median": float(np.median(ratio)),
        "mem_frac_copies": frac_copies,
        "mem_flagged": 1.0 if frac_copies > flag_fraction else 0.0,
        "mem_dist_train_median": float(np.median(d_tr)),
        "mem_dist_heldout_median": float(np.median(d_te)),
    }
