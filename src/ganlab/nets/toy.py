"""Small MLPs for the 2-D mixture suite (ring8 / grid25).

No batch norm anywhere: the mixtures are scored per sample, and a D without batch
statistics composes with every loss and penalty in the lab (the gradient penalty needs
per-sample gradients; a joint real+fake pass needs D to treat rows independently).
"""

from __future__ import annotations

from torch import Tensor, nn


def _mlp(n_in: int, hidden: int, depth: int, n_out: int, act: type[nn.Module], **kw) -> nn.Sequential:
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    width_in = n_in
    for _ in range(depth):
        layers += [nn.Linear(width_in, hidden), act(**kw)]
        width_in = hidden
    layers.append(nn.Linear(width_in, n_out))
    return nn.Sequential(*layers)


class ToyGenerator(nn.Module):
    """z (latent_dim) -> `depth` ReLU layers of `hidden` units -> a point in R^2.

    The output is linear (no tanh): the grid's modes sit at +-4, outside tanh's range.
    """

    def __init__(self, latent_dim: int, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.net = _mlp(latent_dim, hidden, depth, 2, nn.ReLU)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ToyDiscriminator(nn.Module):
    """A point in R^2 -> `depth` LeakyReLU(0.2) layers of `hidden` units -> one logit per point."""

    def __init__(self, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.net = _mlp(2, hidden, depth, 1, nn.LeakyReLU, negative_slope=0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)
