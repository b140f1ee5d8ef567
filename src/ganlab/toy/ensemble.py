"""Train every (dataset, seed) member of one variant's toy suite as one batched model.

`EnsembleTrainer` is the project's `GanTrainer` (same n_critic loop, losses, penalties,
clipping, instance noise, EMA, optimisers) with its hooks overridden for a leading member
dimension: the data is (E, N, 2), the nets are `nets.toy_ensemble` stacks, the losses'
means over (E, B) are scaled by E so each member's parameters get the gradient of its own
solo loss, and every random draw comes from that member's own generator, seeded exactly
as its solo `GanTrainer` would seed it. Members never interact, so member e follows its
solo training to float rounding (tests/test_toy_ensemble.py checks this per loss family).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganlab.config.params import Params
from ganlab.kinds.unconditional.train import GanTrainer
from ganlab.nets.build import build_gan
from ganlab.nets.toy_ensemble import EnsembleDiscriminator, EnsembleGenerator
from ganlab.util import GanlabError, derive_seed


@dataclass(frozen=True)
class Member:
    """One training of the suite: its dataset, the user's seed, and the seed its solo
    `GanTrainer` would get (from both, so ring8 and grid25 never share init or noise)."""

    dataset: str
    seed: int

    @property
    def trainer_seed(self) -> int:
        return derive_seed(self.seed, "toy", self.dataset)

    @property
    def data_seed(self) -> int:
        return derive_seed(self.seed, "toy", self.dataset, "data")


class EnsembleTrainer(GanTrainer):
    """E members of one variant, advanced together by `run_epoch`."""

    sample_dims = 2  # inputs are (members, batch, ...): penalties take per-sample norms

    def __init__(self, member_params: list[Params], variant: str, reals: list[Tensor],
                 device: torch.device):
        if not member_params or len(member_params) != len(reals):
            raise GanlabError("toy ensemble: one Params and one training set per member")
        sizes = {tuple(r.shape) for r in reals}
        if len(sizes) != 1:
            raise GanlabError(f"toy ensemble: members need equal training sets, got {sorted(sizes)}")
        self.member_params = member_params
        self.n_members = len(member_params)
        self.loss_scale = float(self.n_members)
        super().__init__(member_params[0], variant, torch.stack(reals), device)

    def build_nets(self) -> tuple[nn.Module, nn.Module]:
        gs, ds = [], []
        for mp in self.member_params:
            # exactly GanTrainer.build_nets with the member's seed
            torch.manual_seed(derive_seed(mp.seed, self.variant, "init"))
            g, d = build_gan(mp.variant(self.variant), self.image_shape)
            gs.append(g)
            ds.append(d)
        return EnsembleGenerator(gs), EnsembleDiscriminator(ds)

    def begin_epoch(self, epoch: int) -> None:
        perms = []
        self.gens = []
        for mp in self.member_params:
            cpu_gen = torch.Generator().manual_seed(derive_seed(mp.seed, self.variant, epoch))
            self.gens.append(torch.Generator(device=self.device).manual_seed(
                derive_seed(mp.seed, self.variant, epoch, "noise")))
            perms.append(torch.randperm(self.real.shape[1], generator=cpu_gen))
        idx = torch.stack(perms).to(self.device)
        # the epoch's order of every member's data, gathered once: a batch is then a slice
        self.epoch_real = self.real.gather(1, idx.unsqueeze(-1).expand(-1, -1, self.real.shape[-1]))

    def real_batch(self, i: int) -> Tensor:
        bs = self.p.batch_size
        return self.epoch_real[:, i * bs : (i + 1) * bs]

    def _per_member(self, draw) -> Tensor:
        return torch.stack([draw(g) for g in self.gens])

    def latent(self, n: int) -> Tensor:
        return self._per_member(
            lambda g: torch.randn(n, self.p.latent_dim, generator=g, device=self.device))

    def input_noise(self, x: Tensor, std: float) -> Tensor:
        if std <= 0:
            return x
        return x + std * self._per_member(
            lambda g: torch.randn(x.shape[1:], generator=g, device=x.device))

    def interpolation_weights(self, real: Tensor) -> Tensor:
        shape = real.shape[1:2] + (1,) * (real.dim() - 2)
        return self._per_member(
            lambda g: torch.rand(shape, generator=g, device=real.device, dtype=real.dtype))


def set_lr_factor(trainer: GanTrainer, factor: float) -> None:
    """Both optimisers' rates at `factor` times the variant's (the suite's schedule)."""
    for opt, base in ((trainer.opt_g, trainer.p.lr), (trainer.opt_d, trainer.p.d_learning_rate)):
        for group in opt.param_groups:
            group["lr"] = base * factor
