"""CycleGAN nets sized for 28x28 digits on a CPU (`kind: cycle`).

The paper's (Zhu et al. 2017) ResNet generator and PatchGAN, scaled down: two stride-2 stages
(28 -> 14 -> 7 -> 28) with `cycle.res_blocks` residual blocks at 7x7, instance norm. At 7x7 the
blocks see the whole digit, which the MNIST <-> UCI pair needs: UCI digits fill the frame
while MNIST digits sit in a 20x20 box, so translating means rescaling, not only restyling.
For the same reason the critic has three stride-2 stages: a 3x3 map of logits, each with a
receptive field (38x38) that covers the whole 28x28 image, where the paper's 70x70 patches
cover a fraction of a 256x256 photo.
"""

from __future__ import annotations

from torch import Tensor, nn


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True),
            nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CycleGenerator(nn.Module):
    """image -> c7s1-w -> d(2w) -> d(4w) -> R(4w) x n -> u(2w) -> u(w) -> c7s1-C, Tanh
    (the paper's notation)."""

    def __init__(self, channels: int = 1, width: int = 16, res_blocks: int = 2):
        super().__init__()
        w = width

        def down(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, 2, 1), nn.InstanceNorm2d(b, affine=True), nn.ReLU()]

        def up(a: int, b: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(a, b, 3, 2, 1, output_padding=1),
                    nn.InstanceNorm2d(b, affine=True), nn.ReLU()]

        self.net = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7), nn.InstanceNorm2d(w, affine=True),
            nn.ReLU(),
            *down(w, 2 * w), *down(2 * w, 4 * w),
            *[ResBlock(4 * w) for _ in range(res_blocks)],
            *up(4 * w, 2 * w), *up(2 * w, w),
            nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """image -> C(w)-C(2w)-C(4w) -> a map of patch logits (N, 3, 3) for 28x28."""

    def __init__(self, channels: int = 1, width: int = 16, norm: str = "instance"):
        super().__init__()
        w = width

        def norm_(ch: int) -> list[nn.Module]:
            return [nn.InstanceNorm2d(ch, affine=True)] if norm != "none" else []

        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), *norm_(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), *norm_(4 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 1, 3, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class CyclePair(nn.Module):
    """The two generators: `ab` maps domain A (MNIST) to B (UCI), `ba` back.
    One module so both are saved, loaded and sampled as the variant's generator."""

    def __init__(self, channels: int = 1, width: int = 16, res_blocks: int = 2):
        super().__init__()
        self.ab = CycleGenerator(channels, width, res_blocks)
        self.ba = CycleGenerator(channels, width, res_blocks)


class CycleCritics(nn.Module):
    def __init__(self, channels: int = 1, width: int = 16, norm: str = "instance"):
        super().__init__()
        self.a = PatchDiscriminator(channels, width, norm)  # real MNIST vs F(UCI)
        self.b = PatchDiscriminator(channels, width, norm)  # real UCI vs G(MNIST)


def build_cycle_gan(p, image_shape: tuple[int, int, int]) -> tuple[CyclePair, CycleCritics]:
    # Instance norm is per sample, so it composes with gp/r1; only d_norm none removes it.
    norm = "none" if p.d_norm == "none" else "instance"
    g = CyclePair(image_shape[0], p.width, p.cycle.res_blocks)
    d = CycleCritics(image_shape[0], p.width, norm)
    if p.spectral_norm:
        from ganlab.nets.build import apply_spectral_norm

        apply_spectral_norm(d)
    return g, d
