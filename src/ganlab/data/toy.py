"""Generated 2-D Gaussian mixtures for mode-collapse experiments.

`ring8` (8 modes on a circle) and `grid25` (5x5 lattice) are the toy targets used by
VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018): every mode has a known
centre and spread, so `ganlab.metrics.modes.score_modes` can count which ones a
generator reproduces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


def ring_centers(n_modes: int = 8, radius: float = 1.0) -> np.ndarray:
    """`n_modes` points evenly spaced on a circle of `radius`, shape (n_modes, 2)."""
    if n_modes < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes}")
    # Angles are 2*pi*k/n for k = 0..n-1. np.linspace(0, 2*pi, n) would include both
    # 0 and 2*pi, the same point, leaving only n-1 distinct modes (one counted twice).
    angles = 2.0 * np.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centers(side: int = 5, spacing: float = 2.0) -> np.ndarray:
    """A `side` x `side` lattice centred on the origin, shape (side**2, 2).

    The defaults give the grid25 means {-4, -2, 0, 2, 4}^2.
    """
    if side < 1:
        raise ValueError(f"side must be >= 1, got {side}")
    offsets = (np.arange(side) - (side - 1) / 2.0) * spacing
    xx, yy = np.meshgrid(offsets, offsets, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def sample_mixture(
    centers: np.ndarray, std: float, n: int, generator: torch.Generator
) -> torch.Tensor:
    """`n` float32 points: a uniformly chosen centre plus isotropic N(0, std^2) noise.

    All randomness comes from `generator`, so the same seed gives the same points.
    """
    c = torch.as_tensor(np.asarray(centers), dtype=torch.float32)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"centers must have shape (n_modes, dim), got {tuple(c.shape)}")
    idx = torch.randint(0, c.shape[0], (n,), generator=generator)
    noise = torch.randn(n, c.shape[1], generator=generator, dtype=torch.float32)
    return c[idx] + float(std) * noise


@dataclass(frozen=True)
class ToySpec:
    """Defaults of one toy dataset.

    `scale` is what the `radius` argument of `toy_dataset` overrides: the circle radius
    for the ring, the half-width of the lattice (outermost mean) for the grid.
    """

    centers: Callable[[float], np.ndarray]
    scale: float
    std: float


def _grid25(half_width: float) -> np.ndarray:
    # 5 means per axis spanning [-half_width, half_width]: spacing = 2*half_width/4.
    return grid_centers(side=5, spacing=half_width / 2.0)


TOY_DATASETS: dict[str, ToySpec] = {
    "ring8": ToySpec(centers=lambda r: ring_centers(8, r), scale=1.0, std=0.01),
    "grid25": ToySpec(centers=_grid25, scale=4.0, std=0.05),
}


def toy_dataset(
    name: str,
    n: int,
    seed: int,
    radius: float | None = None,
    std: float | None = None,
) -> tuple[torch.Tensor, np.ndarray, float]:
    """Sample `n` points of toy dataset `name`; return (points, centers, std).

    `radius` / `std` override the defaults in TOY_DATASETS (see `ToySpec.scale` for what
    `radius` means on the grid).
    """
    spec = TOY_DATASETS.get(name)
    if spec is None:
        allowed = ", ".join(sorted(TOY_DATASETS))
        raise ValueError(f"unknown toy dataset '{name}'; allowed: {allowed}")
    scale = spec.scale if radius is None else float(radius)
    sigma = spec.std if std is None else float(std)
    if scale <= 0 or sigma <= 0:
        raise ValueError(f"radius and std must be > 0, got radius={scale}, std={sigma}")
    centers = spec.centers(scale)
    gen = torch.Generator().manual_seed(int(seed))
    return sample_mixture(centers, sigma, n, gen), centers, sigma
