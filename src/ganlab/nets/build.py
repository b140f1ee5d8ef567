"""Architectures: the seed MLP GAN, a DCGAN-style conv net, and the judge classifier."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ganlab.config.params import TrainParams


def build_gan(p: TrainParams, image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator for variant settings `p` and images of `image_shape`."""
    if p.arch == "mlp":
        from ganlab.nets.mlp import SeedDiscriminator, SeedGenerator

        g: nn.Module = SeedGenerator(p.latent_dim, image_shape)
        d: nn.Module = SeedDiscriminator(image_shape)
    elif p.arch == "dcgan":
        from ganlab.nets.dcgan import DCDiscriminator, DCGenerator

        g = DCGenerator(p.latent_dim, image_shape, p.width)
        d = DCDiscriminator(image_shape, p.width, p.resolved_d_norm)
    elif p.arch == "toy":  # 2-D mixtures: image_shape is (2,), width is the hidden size
        from ganlab.nets.toy import ToyDiscriminator, ToyGenerator

        g = ToyGenerator(p.latent_dim, p.width, depth=3)
        d = ToyDiscriminator(p.width, depth=3)
    else:  # validated in params; guards direct callers
        raise ValueError(f"arch: {p.arch!r} is not one of mlp, dcgan, toy")
    if p.spectral_norm:
        apply_spectral_norm(d)
    return g, d


def apply_spectral_norm(module: nn.Module) -> None:
    """Divide each linear/conv weight by its largest singular value (Miyato et al. 2018),
    estimated by one power-iteration step per forward pass."""
    from torch.nn.utils.parametrizations import spectral_norm

    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear | nn.Conv2d):
            setattr(module, name, spectral_norm(child))
        else:
            apply_spectral_norm(child)


@contextmanager
def _read_only(module: nn.Module) -> Iterator[None]:
    """Read effective weights without side effects: a spectral-norm parametrisation in
    training mode runs a power-iteration step (and overwrites its u/v buffers) every time
    `.weight` is read, so a diagnostic read would change training. In eval mode it only
    divides by the stored estimate."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, was in modes:
            m.training = was


@torch.no_grad()
def largest_singular_value(module: nn.Module) -> float:
    """Max over D's linear/conv layers of the exact top singular value of the effective weight."""
    best = 0.0
    with _read_only(module):
        for m in module.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                w = m.weight.flatten(1)
                best = max(best, float(torch.linalg.matrix_norm(w, ord=2)))
    return best


class SigmaTracker:
    """Largest singular value over D's linear/conv weights, by power iteration warm-started
    from the previous call's vectors: as exact as an SVD once converged (the weights move
    little between log steps) at a few matrix-vector products instead of an SVD per layer."""

    def __init__(self, iters: int = 10):
        self.iters = iters
        self.vectors: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def estimate(self, module: nn.Module) -> float:
        with _read_only(module):
            return self._estimate(module)

    def _estimate(self, module: nn.Module) -> float:
        best = 0.0
        for i, m in enumerate(x for x in module.modules() if isinstance(x, nn.Linear | nn.Conv2d)):
            w = m.weight.flatten(1)
            v = self.vectors.get(i)
            if v is None or v.shape[0] != w.shape[1]:
                gen = torch.Generator().manual_seed(i)
                v = torch.randn(w.shape[1], generator=gen).to(w)
                iters = self.iters * 5
            else:
                iters = self.iters
            for _ in range(iters):
                v = w.T @ (w @ v)
                v = v / v.norm().clamp_min(1e-12)
            self.vectors[i] = v
            best = max(best, float((w @ v).norm()))
        return best
