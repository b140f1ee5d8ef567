"""DCGAN-style conv nets (Radford et al. 2016) for 28x28 (MNIST) and 32x32 (CIFAR) images.

Guidelines followed: strided (transposed) convolutions instead of pooling, batch norm in G,
ReLU in G with Tanh output, LeakyReLU(0.2) in D, no hidden fully connected layers beyond
the projection of z, and the paper's initialisation: "All weights were initialized from a
zero-centered Normal distribution with standard deviation 0.02" (sec. 4). As in the PyTorch
DCGAN example, batch-norm scales start at N(1, 0.02) and every bias at 0; the paper's
"all weights" covers the linear projection of z and D's linear head too.
D's normalisation is chosen per variant (WGAN-GP needs none).
"""

from __future__ import annotations

from torch import Tensor, nn

_START = {28: 7, 32: 4}  # spatial size after projecting z; doubled until the image size


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2016) initialisation, applied to every submodule of `module`."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _plan(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    size = image_shape[1]
    if image_shape[1] != image_shape[2] or size not in _START:
        raise ValueError(f"arch: dcgan supports 28x28 and 32x32 images, got {image_shape}")
    start = _START[size]
    n_up = {7: 2, 4: 3}[start]
    return start, n_up


class DCGenerator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 64):
        super().__init__()
        self.start, n_up = _plan(image_shape)
        ch = width * 2 ** (n_up - 1)
        self.ch0 = ch
        self.project = nn.Sequential(
            nn.Linear(latent_dim, ch * self.start * self.start, bias=False),
            nn.BatchNorm1d(ch * self.start * self.start),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for _ in range(n_up - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, image_shape[0], 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(z.shape[0], self.ch0, self.start, self.start)
        return self.body(h)


def _norm(kind: str, ch: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm2d(ch)]
    if kind == "layer":
        return [nn.GroupNorm(1, ch)]  # layer norm over (C, H, W), per sample
    return []


class DCDiscriminator(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], width: int = 64, norm: str = "batch"):
        super().__init__()
        start, n_down = _plan(image_shape)
        ch = width
        layers: list[nn.Module] = [nn.Conv2d(image_shape[0], ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), *_norm(norm, ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(ch * start * start, 1)
        dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).flatten(1)).squeeze(1)
