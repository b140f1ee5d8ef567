"""Mode coverage of samples from a Gaussian-mixture target (ring8 / grid25).

Protocol of VEEGAN (Srivastava et al., 2017, sec. 5.1) and PacGAN (Lin et al., 2018,
sec. 5): a sample is "high quality" when it lies within `n_sigma` standard deviations
(Euclidean distance) of its nearest mode; a mode counts as covered when it is the nearest
mode of at least one high-quality sample.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ganlab.util import atomic_path


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU / requiring grad
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def score_modes(
    samples: Any, centers: Any, std: float, n_sigma: float = 3.0
) -> dict[str, float | int]:
    """Score `samples` (n, d) against mixture `centers` (m, d) of per-mode `std`.

    Returns
        modes_covered      number of modes nearest to >= 1 high-quality sample
        n_modes            m
        high_quality_frac  fraction of samples within n_sigma*std of their nearest mode
        kl_uniform         KL(h || uniform) in nats, h = histogram of the high-quality
                           samples over their nearest modes; 0 when all modes get equal
                           shares, log(m) when a single mode gets everything.

    With no high-quality samples the histogram is undefined; kl_uniform is then log(m),
    the worst value the KL can take, so a generator producing only junk never scores
    better than one collapsed onto a single mode.
    """
    x = _as_array(samples)
    c = _as_array(centers)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"centers must have shape (n_modes, dim), got {c.shape}")
    n_modes = int(c.shape[0])
    x = x.reshape(-1, c.shape[1])
    if x.shape[0] == 0:
        return {"modes_covered": 0, "n_modes": n_modes, "high_quality_frac": 0.0,
                "kl_uniform": math.log(n_modes)}
    # Squared distances via |x|^2 - 2 x.c + |c|^2 would lose precision for points lying
    # exactly on a mode; the direct difference is exact there and cheap for m <= ~100.
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1)
    nearest = d2.argmin(axis=1)
    nearest_dist = np.sqrt(d2[np.arange(x.shape[0]), nearest])
    hq = nearest_dist <= n_sigma * std
    counts = np.bincount(nearest[hq], minlength=n_modes)
    n_hq = int(counts.sum())
    if n_hq == 0:
        kl = math.log(n_modes)
    else:
        h = counts[counts > 0] / n_hq  # 0 log 0 = 0: empty modes contribute nothing
        kl = float(np.sum(h * np.log(h * n_modes)))
    return {
        "modes_covered": int((counts > 0).sum()),
        "n_modes": n_modes,
        "high_quality_frac": n_hq / x.shape[0],
        "kl_uniform": max(kl, 0.0),  # clip -1e-16 rounding so a perfect score is 0
    }


def plot_points(
    samples_by_step: dict[int, Any], centers: Any, path: Path | str, max_cols: int = 5
) -> None:
    """One PNG with a panel per training step: generated points over the true modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = _as_array(centers)
    steps = sorted(samples_by_step)
    n = max(len(steps), 1)
    ncols = min(n, max_cols)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    # One common frame, a margin beyond the outermost mode, keeps panels comparable.
    span = float(np.abs(c).max()) if c.size else 1.0
    lim = 1.5 * span if span > 0 else 1.0
    for ax in axes.ravel()[len(steps):]:
        ax.axis("off")
    for ax, step in zip(axes.ravel(), steps, strict=False):
        pts = _as_array(samples_by_step[step]).reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, color="tab:blue", label="generated")
        ax.scatter(c[:, 0], c[:, 1], s=40, marker="x", color="tab:red", label="modes")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"step {step}")
    if steps:
        axes[0, 0].legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
