"""Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium").

FID is the Fréchet (2-Wasserstein) distance between two Gaussians fitted to
feature sets (Dowson & Landau 1982):

    d² = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

Only the *trace* of (S1 S2)^{1/2} is needed. S1 S2 is not symmetric, but it is
similar to the symmetric PSD matrix A = S1^{1/2} S2 S1^{1/2}
(S1 S2 = S1^{1/2} A S1^{-1/2}), so both have the same non-negative
eigenvalues and Tr (S1 S2)^{1/2} = sum_i sqrt(eig_i(A)). Working with the
symmetric form lets us use `eigh`, which is stable and never produces the
spurious imaginary parts that a general `sqrtm` of S1 S2 does when the
product is (near-)singular, e.g. with fewer samples than feature dimensions.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased (ddof=1) covariance of an (N, D) feature array."""
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 samples to estimate a covariance")
    mu = x.mean(axis=0)
    # np.cov returns a 0-d array for D == 1; keep the (D, D) shape explicit.
    sigma = np.atleast_2d(np.cov(x, rowvar=False))
    return mu, sigma


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via eigen-decomposition.

    Tiny negative eigenvalues are rounding noise of a PSD matrix; clipping
    them to zero keeps the root real.
    """
    w, v = np.linalg.eigh((s + s.T) / 2.0)
    w = np.clip(w, 0.0, None)
    return (v * np.sqrt(w)) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) via the symmetric form S1^{1/2} S2 S1^{1/2}."""
    root1 = _psd_sqrt(sigma1)
    a = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((a + a.T) / 2.0)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size,) * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(s1, s2)
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # The true distance is >= 0; a tiny negative is cancellation error.
    return max(value, 0.0)


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID between two (N, D) feature sets."""
    mu_a, s_a = gaussian_stats(feats_a)
    mu_b, s_b = gaussian_stats(feats_b)
    return frechet_distance(mu_a, s_a, mu_b, s_b)
