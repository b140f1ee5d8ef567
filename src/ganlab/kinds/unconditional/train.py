"""`kind: unconditional`: G(z) against D(x), n_critic D steps then one G step.

What the stages need of this kind (its `KIND`): the trainer, the sampler rebuilt from a
generator file, the sample stage's outputs (samples.npz, grid, interpolation), the evaluate
stage's scoring and the MLflow model adapter.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ganlab.config.params import Params
from ganlab.data.images import load_split, to_unit_range
from ganlab.kinds.base import Trainer, TrainState
from ganlab.nets.build import build_gan
from ganlab.runtime.distributed import DistContext
from ganlab.util import derive_seed


class GanTrainer(Trainer):
    """The unconditional kind: G(z) against D(x), n_critic D steps then one G step."""

    kind = "unconditional"

    def __init__(self, params: Params, variant: str, real: Tensor, device: torch.device,
                 dist: DistContext | None = None):
        super().__init__(params, variant, device, dist)
        p = self.p
        self.real = real.to(device)
        self.image_shape = tuple(real.shape[self.sample_dims:])
        self.adopt_pair(*self.build_nets())
        # the nets the training passes run through: DDP wrappers under torchrun (G and D
        # apart), the nets themselves otherwise; checkpoints and samples use the bare nets
        self.g_train = self.dist.wrap(self.g, device)
        self.d_train = self.dist.wrap(self.d, device)
        self.joint_d = p.arch in ("mlp", "toy") or p.resolved_d_norm != "batch"
        n_real = real.shape[self.sample_dims - 1]  # per member, for an ensemble
        self.set_budget(n_real)

    # hooks an ensemble of members overrides (ganlab.toy.ensemble)
    def build_nets(self) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(derive_seed(self.params.seed, self.variant, "init"))
        return build_gan(self.p, self.image_shape)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self.perm = torch.randperm(len(self.real), generator=self.cpu_gen).to(self.device)

    def real_batch(self, i: int) -> Tensor:
        # batch_size is the global batch; under torchrun rank r takes its r-th equal slice
        bs = self.p.batch_size
        lo = i * bs + self.dist.rank * (bs // self.dist.world_size)
        return self.real.index_select(0, self.perm[lo : lo + bs // self.dist.world_size])


    def export(self) -> dict:
        return {"state_dict": self.sampler().state_dict(), "variant": self.variant, "kind": self.kind,
                "image_shape": list(self.image_shape), "latent_dim": self.p.latent_dim,
                "ema": self.p.ema > 0}

    def _critic(self, x: Tensor) -> Tensor:
        return self.d_train(x)

    def _joint(self, real_in: Tensor, fake_in: Tensor) -> tuple[Tensor, Tensor]:
        # no batch statistics in D: one pass over both halves is the same function
        return self.d_train(torch.cat([real_in, fake_in], dim=self.sample_dims - 1)).split(
            real_in.shape[self.sample_dims - 1], dim=self.sample_dims - 1)

    def train_step(self, i: int, state: TrainState, log_now: bool) -> dict[str, Tensor | float] | None:
        p = self.p
        noise_std = self.noise_std(state)
        real = self.real_batch(i)
        bs = real.shape[self.sample_dims - 1]
        g_step_next = (state.d_step + 1) % p.n_critic == 0
        # n_critic = 1: the D step draws its fakes with G's graph kept and the G step reuses
        # them through the updated D (the PyTorch DCGAN example): one G forward per
        # iteration. n_critic > 1: WGAN / WGAN-GP Algorithm 1 draw fresh z for the G step,
        # so the critic steps need no graph.
        reuse = g_step_next and p.n_critic == 1
        with torch.set_grad_enabled(reuse):
            fake_g = self.g_train(self.latent(bs))
        d_loss, out_real, out_fake, extra = self.discriminator_objective(
            self._critic, self._critic, real, fake_g.detach(), noise_std,
            joint=self._joint if self.joint_d else None)
        log_next = g_step_next and log_now
        extra.update(self.update_discriminator(d_loss, self.opt_d, self.d, count_clipped=log_next))
        state.d_step += 1
        if not g_step_next:
            return None
        if not reuse:
            fake_g = self.g_train(self.latent(bs))
        # through the bare D: its parameters take no gradient in the G step, and a DDP
        # forward would leave D's reducer waiting for gradients that never come
        g_loss = self.generator_objective(self.d, self.d, fake_g, noise_std, real=real)
        g_grad_norm = self.update_generator(g_loss, self.opt_g, self.g, measure=log_now, ema=self.ema)
        state.g_step += 1
        if not log_now:
            return None
        out: dict[str, Tensor | float] = {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": self._as_prob(out_real).mean(),
            "d_fake": self._as_prob(out_fake).mean(),
            # E D(x) - E D(G(z)) on raw outputs: the critic's Wasserstein estimate for
            # critic losses (meaningful up to the Lipschitz constant).
            "d_gap": (out_real.mean() - out_fake.mean()).detach(),
            "g_grad_norm": g_grad_norm,
            **extra,
            "sigma_max": self.d_sigma(self.d),
        }
        if p.instance_noise.std > 0:
            out["noise_std"] = noise_std
        return out


@torch.no_grad()
def build_trainer(params: Params, variant: str, data_dir: Path, device: torch.device,
                  dist: DistContext | None = None, generate_only: bool = False) -> GanTrainer:
    split = load_split(data_dir / "train.npz")
    return GanTrainer(params, variant, to_unit_range(split.images), device, dist)
