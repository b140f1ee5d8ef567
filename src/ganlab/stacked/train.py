"""Training on Stacked MNIST: the unconditional kind's `GanTrainer` on stacks drawn on the fly,
with PacGAN's packing.

Data (ganlab.stacked.data): a real stack is three prepared training digits drawn
independently and uniformly as its R, G, B channels; every batch draws fresh index triples
from the epoch's seeded generator, so no stack set is stored.

Packing (Lin et al. 2018): D judges m samples at once, concatenated along channels, so its
input is (3m, 28, 28) and its output one logit per pack. Both sides are packed before D
sees them: a real pack is m stacks, a fake pack is G's images of m independent latents
(`PackedGenerator`: z of m x latent_dim -> (3m, 28, 28)). The trainer then runs unchanged:
every loss and penalty is per pack (R1 / R2 take a pack's gradient norm over all its 3m
channels), `batch_size` counts packs (each D step sees batch_size x m real and as many fake
stacks), and G's batch norm sees all batch_size x m samples. m = 1 is the plain DCGAN.

Nets: PacGAN Table 3's small DCGAN shape (ganlab.nets.dcgan at 28x28): G of base width w
(2w channels at 7x7, w at 14x14, 3 out), D of width round(w x d_ratio) (1/4 or 1/2 of G's as
in PacGAN; 1, as large as G, for R3GAN's pair).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganlab.config.params import Params
from ganlab.config.stacked import STACK_CHANNELS, StackedVariant
from ganlab.kinds.base import TrainState
from ganlab.kinds.unconditional.train import GanTrainer
from ganlab.nets.build import apply_spectral_norm
from ganlab.nets.dcgan import DCDiscriminator, DCGenerator
from ganlab.stacked.data import draw_stacks
from ganlab.util import GanlabError, derive_seed

IMAGE_SIZE = 28


class PackedGenerator(nn.Module):
    """G applied to m latents per pack: z (B, m * latent) -> (B, 3m, H, W), sample j of the
    pack in channels 3j..3j+2. `inner` is the one-sample generator that is scored."""

    def __init__(self, inner: nn.Module, pack: int, latent_dim: int):
        super().__init__()
        self.inner, self.pack, self.latent_dim = inner, pack, latent_dim

    def forward(self, z: Tensor) -> Tensor:
        b = z.shape[0]
        x = self.inner(z.reshape(b * self.pack, self.latent_dim))
        return x.reshape(b, self.pack * x.shape[1], *x.shape[2:])


def pack_samples(x: Tensor, pack: int) -> Tensor:
    """(B m, C, H, W) -> (B, C m, H, W): consecutive samples concatenated along channels."""
    n = x.shape[0]
    if n % pack:
        raise ValueError(f"{n} samples do not make packs of {pack}")
    return x.reshape(n // pack, pack * x.shape[1], *x.shape[2:])


class StackedTrainer(GanTrainer):
    """A `GanTrainer` whose real batches are packs of stacks drawn on the fly and whose G is
    packed: n_critic, the losses, penalties, EMA and optimisers are the unconditional kind's."""

    def __init__(self, params: Params, variant: str, sv: StackedVariant, digits: Tensor,
                 device: torch.device):
        self.sv = sv
        super().__init__(params, variant, digits, device)
        self.image_shape = (STACK_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)  # one sample, unpacked

    def build_nets(self) -> tuple[nn.Module, nn.Module]:
        p, sv = self.p, self.sv
        torch.manual_seed(derive_seed(self.params.seed, self.variant, "init"))
        g = DCGenerator(p.latent_dim, (STACK_CHANNELS, IMAGE_SIZE, IMAGE_SIZE), p.width)
        d = DCDiscriminator((STACK_CHANNELS * sv.pack, IMAGE_SIZE, IMAGE_SIZE), sv.d_width,
                            p.resolved_d_norm)
        if p.spectral_norm:
            apply_spectral_norm(d)
        return PackedGenerator(g, sv.pack, p.latent_dim), d

    def begin_epoch(self, epoch: int) -> None:
        super(GanTrainer, self).begin_epoch(epoch)  # the seeded streams; no permutation

    def real_batch(self, i: int) -> Tensor:
        stacks, _ = draw_stacks(self.real, self.p.batch_size * self.sv.pack, self.cpu_gen)
        return pack_samples(stacks, self.sv.pack)

    def latent(self, n: int) -> Tensor:
        return torch.randn(n, self.sv.pack * self.p.latent_dim, generator=self.gen,
                           device=self.device)

    def ema_refresh_inputs(self, n: int, gen: torch.Generator):
        return torch.randn(n, self.sv.pack * self.p.latent_dim, generator=gen, device=self.device)

    def stack_sampler(self) -> nn.Module:
        """The one-sample generator (G's average when `ema` is on) that is scored."""
        return self.sampler().inner


def stacked_params(params: Params, variant: str, seed: int) -> tuple[Params, StackedVariant]:
    """The Params one (variant, seed) run trains with: the stacked variant as its only
    variant, `seed` as its seed (the trainer seeds by (seed, variant, epoch)) and
    params.yaml's device; nothing else of params.yaml (not `training:`, `variants:` or
    `budget_scale`) reaches a stacked run: its settings are `stacked:` alone."""
    variants = params.stacked.variants
    if variant not in variants:
        raise GanlabError(f"stacked variant {variant!r} is not in params.yaml stacked.variants: "
                          f"{', '.join(variants) or '(none)'}")
    sv = variants[variant]
    return Params(seed=seed, device=params.device, variants={variant: sv.train}), sv


def train_stacked(params: Params, variant: str, seed: int, digits: Tensor, device: torch.device,
                  g_steps: int | None = None) -> tuple[StackedTrainer, list[dict[str, float]]]:
    """Train one (variant, seed) for `g_steps` G updates (default: the variant's own
    `g_steps`, else `stacked.g_steps`) on stacks of `digits` (N, 1, 28, 28) in [-1, 1]; the
    trainer and its logged rows."""
    run_params, sv = stacked_params(params, variant, seed)
    trainer = StackedTrainer(run_params, variant, sv, digits, device)
    g_steps = sv.steps(params.stacked.g_steps) if g_steps is None else g_steps
    # one trainer epoch of the whole budget: stacks are drawn fresh every batch
    trainer.steps_per_epoch = trainer.total_d_steps = g_steps * trainer.p.n_critic
    state = TrainState()
    rows = trainer.run_epoch(state)
    return trainer, rows


@torch.no_grad()
def generate_stacks(g: nn.Module, n: int, latent_dim: int, gen: torch.Generator,
                    batch: int, device: torch.device):
    """Yield batches of G's stacks (in [-1, 1]) for n fixed-seed latents."""
    was = g.training
    g.eval()
    try:
        for lo in range(0, n, batch):
            z = torch.randn(min(batch, n - lo), latent_dim, generator=gen)
            yield g(z.to(device)).cpu()
    finally:
        g.train(was)
