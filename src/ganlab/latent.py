"""Latent draws shared by stages `train` (per-epoch progress grids) and `sample` (the final
grid), kept apart from train.py so that sample's import closure is only what it runs."""

from __future__ import annotations

import torch
from torch import Tensor

from ganlab.params import Params
from ganlab.util import derive_seed


def grid_noise(params: Params, variant: str, n: int, latent_dim: int) -> Tensor:
    """The fixed noise of a variant's sample grids: the same z in training and sampling."""
    g = torch.Generator().manual_seed(derive_seed(params.seed, variant, "grid"))
    return torch.randn(n, latent_dim, generator=g)
