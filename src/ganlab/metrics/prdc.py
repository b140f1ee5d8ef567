"""k-NN manifold metrics on feature sets.

* Improved precision & recall (Kynkäänniemi et al. 2019, "Improved Precision
  and Recall Metric for Assessing Generative Models", eq. 1-3): the real
  manifold is the union of balls around each real feature with radius equal
  to the distance to its k-th nearest real neighbour; precision is the
  fraction of fake samples inside that union, recall the fraction of real
  samples inside the analogous fake manifold.
* Density & coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity
  Metrics for Generative Models", eq. 4-5): density counts, per fake sample,
  how many real balls contain it (divided by k, averaged over fakes; ≈1 when
  the distributions match); coverage is the fraction of real balls that
  contain at least one fake sample.

All distances are Euclidean. They are computed in row chunks with the
expansion ||a-b||² = ||a||² + ||b||² - 2 a·b (clamped at 0 against rounding)
so at most `chunk` × M distances live in memory; ball membership is tested
on squared distances to avoid square roots in the inner loop. A point is a
member of a ball when it lies in the *closed* ball (d <= radius), matching
the papers' definitions.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def _as_tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    arr = np.asarray(x)
    arr = arr.reshape(arr.shape[0], -1)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(dtype)


def _sq_block(
    a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor
) -> torch.Tensor:
    """Squared distances between rows of a and b, given their squared norms."""
    # In-place updates of the matmul output: out-of-place broadcasting here
    # allocates several temporaries of the block's size and costs ~10× the ops.
    d2 = (a @ b.T).mul_(-2.0).add_(a_sq.unsqueeze(1)).add_(b_sq.unsqueeze(0))
    return d2.clamp_min_(0.0)


def iter_sq_dist_chunks(
    a: torch.Tensor, b: torch.Tensor, chunk: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (row_offset, squared distances of a[rows] to all of b)."""
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    a_sq, b_sq = (a * a).sum(dim=1), (b * b).sum(dim=1)
    for start in range(0, a.shape[0], chunk):
        stop = start + chunk
        yield start, _sq_block(a[start:stop], a_sq[start:stop], b, b_sq)


def _merge_smallest(best: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    k = best.shape[1]
    return torch.topk(torch.cat([best, cand], dim=1), k, dim=1, largest=False).values


def _knn_sq(x: torch.Tensor, kmax: int, chunk: int) -> torch.Tensor:
    """Sorted squared distances to the kmax nearest *other* rows of x.

    The distance matrix is symmetric, so only blocks on and above the
    diagonal are computed and each one updates the running k-NN lists of both
    its row block and (transposed) its column block: half the matmul work of
    a plain row sweep, with chunk × chunk memory.
    """
    n = x.shape[0]
    if not 1 <= kmax < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} samples, got {kmax}")
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    sq = (x * x).sum(dim=1)
    best = torch.full((n, kmax), float("inf"), dtype=x.dtype)
    starts = range(0, n, chunk)
    for i in starts:
        rows = slice(i, i + chunk)
        for j in starts[i // chunk :]:
            cols = slice(j, j + chunk)
            d2 = _sq_block(x[rows], sq[rows], x[cols], sq[cols])
            if i == j:
                # Exclude each point from its own neighbour list explicitly
                # rather than relying on its self-distance rounding to 0.
                d2.fill_diagonal_(float("inf"))
            best[rows] = _merge_smallest(best[rows], d2)
            if i != j:
                best[cols] = _merge_smallest(best[cols], d2.T)
    return torch.sort(best, dim=1).values


def knn_radii(
    x: np.ndarray, k: int, chunk: int = 2048, dtype: torch.dtype = torch.float32
) -> np.ndarray:
    """Distance from each row of x to its k-th nearest neighbour (self excluded)."""
    with torch.no_grad():
        sq = _knn_sq(_as_tensor(x, dtype), k, chunk)[:, k - 1]
    return sq.sqrt().double().numpy()


def nearest_distances(
    query: np.ndarray,
    ref: np.ndarray,
    chunk: int = 2048,
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Distance from each row of `query` to its nearest row of `ref`."""
    q, r = _as_tensor(query, dtype), _as_tensor(ref, dtype)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"dimension mismatch: {q.shape[1]} vs {r.shape[1]}")
    out = torch.empty(q.shape[0], dtype=dtype)
    with torch.no_grad():
        for start, d2 in iter_sq_dist_chunks(q, r, chunk):
            out[start : start + d2.shape[0]] = d2.min(dim=1).values
    return out.sqrt().double().numpy()


def prdc(
    real: np.ndarray,
    fake: np.ndarray,
    k_pr: int = 3,
    k_dc: int = 5,
    chunk: int = 2048,
    dtype: torch.dtype = torch.float32,
    compute_recall: bool = True,
) -> dict[str, float]:
    """Precision, recall (k=k_pr) and density, coverage (k=k_dc) in one pass.

    Sharing the real-fake distance pass is what keeps the 10k × 10k case
    cheap; the public wrappers below call this. `compute_recall=False` skips
    the fake-fake k-NN pass (recall is then NaN).
    """
    r, f = _as_tensor(real, dtype), _as_tensor(fake, dtype)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"dimension mismatch: {r.shape[1]} vs {f.shape[1]}")
    if min(k_pr, k_dc) < 1:
        raise ValueError(f"k must be >= 1, got k_pr={k_pr}, k_dc={k_dc}")
    with torch.no_grad():
        # Squared radii: ball membership is tested on squared distances.
        real_knn = _knn_sq(r, max(k_pr, k_dc), chunk)
        r_pr = real_knn[:, k_pr - 1]
        r_dc = real_knn[:, k_dc - 1]
        f_pr = _knn_sq(f, k_pr, chunk)[:, k_pr - 1] if compute_recall else None

        n_real, n_fake = r.shape[0], f.shape[0]
        in_real_pr = torch.zeros(n_fake, dtype=torch.bool)
        dc_count = torch.zeros(n_fake, dtype=torch.int32)
        recall_hit = torch.zeros(n_real, dtype=torch.bool)
        coverage_hit = torch.zeros(n_real, dtype=torch.bool)
        for start, d2 in iter_sq_dist_chunks(r, f, chunk):
            stop = start + d2.shape[0]
            # Fake j lies in real ball i (precision / density).
            in_real_pr |= (d2 <= r_pr[start:stop, None]).any(dim=0)
            dc_count += (d2 <= r_dc[start:stop, None]).sum(dim=0, dtype=torch.int32)
            # Real i lies in some fake ball (recall).
            if f_pr is not None:
                recall_hit[start:stop] = (d2 <= f_pr[None, :]).any(dim=1)
            # Real ball i contains its nearest fake (coverage).
            coverage_hit[start:stop] = d2.min(dim=1).values <= r_dc[start:stop]

    return {
        "precision": float(in_real_pr.double().mean()),
        "recall": float(recall_hit.double().mean()) if compute_recall else float("nan"),
        "density": float(dc_count.double().mean() / k_dc),
        "coverage": float(coverage_hit.double().mean()),
    }


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, chunk: int = 2048
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019)."""
    out = prdc(real, fake, k_pr=k, k_dc=k, chunk=chunk)
    return out["precision"], out["recall"]


def density_coverage(
    real: np.ndarray, fake: np.ndarray, k: int = 5, chunk: int = 2048
) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020)."""
    out = prdc(real, fake, k_pr=k, k_dc=k, chunk=chunk, compute_recall=False)
    return out["density"], out["coverage"]
