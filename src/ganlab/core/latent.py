"""Latent draws shared by stages `train` (progress grids) and `sample` (the final
grid), kept apart from train.py so that sample's import closure is only what it runs."""

from __future__ import annotations

import torch
from torch import Tensor

from ganlab.config.params import Params
from ganlab.util import derive_seed


def grid_noise(params: Params, variant: str, n: int, latent_dim: int) -> Tensor:
    """The fixed noise of a variant's sample grids: the same z in training and sampling."""
    g = torch.Generator().manual_seed(derive_seed(params.seed, variant, "grid"))
    return torch.randn(n, latent_dim, generator=g)


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation (White 2016): stays at the typical radius of a Gaussian, where
    a straight line between two samples passes through unusually low-norm latents."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        return torch.lerp(a[None], b[None], t[:, None])
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b
