"""The MLP GAN of source document 000 (PyTorch-GAN style), reproduced layer for layer."""

from __future__ import annotations

import math

from torch import Tensor, nn


def _block(n_in: int, n_out: int, normalize: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
    if normalize:
        # The seed writes BatchNorm1d(n_out, 0.8): the second positional argument of
        # BatchNorm1d is *eps*, not momentum. We keep eps=0.8 to reproduce the seed's
        # network faithfully (it makes the normalisation much softer than the usual 1e-5).
        layers.append(nn.BatchNorm1d(n_out, eps=0.8))
    layers.append(nn.LeakyReLU(0.2))
    return layers


class SeedGenerator(nn.Module):
    """z (latent) -> 128 -> 256 -> 512 -> 1024 -> prod(image_shape), Tanh."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = image_shape
        self.net = nn.Sequential(
            *_block(latent_dim, 128, normalize=False),  # BN on every hidden layer but the first
            *_block(128, 256, normalize=True),
            *_block(256, 512, normalize=True),
            *_block(512, 1024, normalize=True),
            nn.Linear(1024, math.prod(image_shape)),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class SeedDiscriminator(nn.Module):
    """prod(image_shape) -> 512 -> 256 -> 1. Returns the logit: the seed's final Sigmoid is
    folded into the losses, which use numerically stable log-sigmoid forms."""

    def __init__(self, image_shape: tuple[int, int, int]):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(math.prod(image_shape), 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)
