"""`kind: conditional`: G(z, y) and D(x, y), trained by the shared driver in train.py.

The step is the unconditional one with the label threaded through: fakes are drawn for the
real batch's labels (so the class mix matches the data, and a gradient penalty interpolates
between a real and a fake of the same class), and D reaches the shared loss and penalty
helpers as the callable x -> D(x, y).

Mismatched negatives (`conditional.mismatch` = w): real images paired with a wrong label are
scored as fake. The adversarial D loss is the shared objective plus
w / (1 + w) (L(real, mismatch) - L(real, fake)), i.e. (L(real, fake) + w L(real, mismatch)) / (1 + w).
For a loss that is a sum A(real) + B(fake) (all but relativistic) that is
A(real) + (B(fake) + w B(mismatch)) / (1 + w); the relativistic loss pairs each real with its
fake and with its mismatch. w = 1 is GAN-CLS (Reed et al. 2016), whose fake term averages the two.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ganlab.config.params import Params
from ganlab.data.images import load_split, to_unit_range
from ganlab.kinds.base import Trainer, TrainState
from ganlab.nets.conditional import build_conditional_gan
from ganlab.util import derive_seed


def mismatched_labels(y: Tensor, num_classes: int, gen: torch.Generator) -> Tensor:
    """A wrong label for every entry: (y + U{1..C-1}) mod C, uniform over the other classes."""
    shift = torch.randint(1, num_classes, y.shape, generator=gen, device=y.device)
    return (y + shift) % num_classes


class _Unpack(nn.Module):
    """net(z, y) called as net((z, y)): how `refresh_batch_norm` feeds a conditional G."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, zy: tuple[Tensor, Tensor]) -> Tensor:
        return self.net(*zy)


class ConditionalTrainer(Trainer):
    kind = "conditional"

    def __init__(self, params: Params, variant: str, real: Tensor, labels: Tensor,
                 device: torch.device, num_classes: int = 10):
        super().__init__(params, variant, device)
        p = self.p
        self.real = real.to(device)
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.num_classes = num_classes
        self.image_shape = tuple(real.shape[1:])
        torch.manual_seed(derive_seed(params.seed, variant, "init"))
        self.adopt_pair(*build_conditional_gan(p, self.image_shape, num_classes))
        self.joint_d = p.arch == "mlp" or p.resolved_d_norm != "batch"
        self.set_budget(len(real))

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self.perm = torch.randperm(len(self.real), generator=self.cpu_gen).to(self.device)


    def ema_refresh_net(self) -> nn.Module:
        return _Unpack(self.ema)

    def ema_refresh_inputs(self, n: int, gen: torch.Generator):
        return (torch.randn(n, self.p.latent_dim, generator=gen, device=self.device),
                torch.randint(0, self.num_classes, (n,), generator=gen, device=self.device))

    def export(self) -> dict:
        return {"state_dict": self.sampler().state_dict(), "variant": self.variant, "kind": self.kind,
                "image_shape": list(self.image_shape), "latent_dim": self.p.latent_dim,
                "num_classes": self.num_classes, "ema": self.p.ema > 0}

    def progress_images(self, fixed_z: Tensor) -> Tensor:
        # row k = digit k, column j = the same noise z_j in every row (8 columns)
        y = torch.arange(self.num_classes, device=fixed_z.device).repeat_interleave(8)
        return self.sampler(preview=True)(fixed_z[:8].repeat(self.num_classes, 1), y)

    def monitor_images(self, z: Tensor) -> Tensor:
        # the quality monitor scores a class-balanced batch: digit i % C for the i-th noise
        y = torch.arange(len(z), device=self.device) % self.num_classes
        return self.sampler()(z.to(self.device), y)


    def train_step(self, i: int, state: TrainState, log_now: bool) -> dict[str, Tensor | float] | None:
        p, d, bs = self.p, self.d, self.p.batch_size
        idx = self.perm[i * bs : (i + 1) * bs]
        real, y = self.real.index_select(0, idx), self.labels.index_select(0, idx)
        noise_std = self.noise_std(state)
        g_step_next = (state.d_step + 1) % p.n_critic == 0
        reuse = g_step_next and p.n_critic == 1  # as the unconditional kind: one G forward
        with torch.set_grad_enabled(reuse):
            fake_g = self.g(self.latent(bs), y)

        def critic(x: Tensor) -> Tensor:  # D(., y) as a function of x alone
            return d(x, y)

        def joint(real_in: Tensor, fake_in: Tensor) -> tuple[Tensor, Tensor]:
            return d(torch.cat([real_in, fake_in]), y.repeat(2)).split(bs)

        d_loss, out_real, out_fake, extra = self.discriminator_objective(
            critic, critic, real, fake_g.detach(), noise_std, joint=joint if self.joint_d else None)
        w = p.conditional.mismatch
        if w > 0:
            out_mis = d(self.input_noise(real, noise_std), mismatched_labels(y, self.num_classes, self.gen))
            d_loss = d_loss + w / (1.0 + w) * (self.loss.d_loss(out_real, out_mis)
                                               - self.loss.d_loss(out_real, out_fake))
            extra["d_mismatch"] = self._as_prob(out_mis).mean()
        log_next = g_step_next and log_now
        extra.update(self.update_discriminator(d_loss, self.opt_d, d, count_clipped=log_next))
        state.d_step += 1
        if not g_step_next:
            return None
        if not reuse:
            fake_g = self.g(self.latent(bs), y)
        g_loss = self.generator_objective(critic, d, fake_g, noise_std, real=real)
        g_grad_norm = self.update_generator(g_loss, self.opt_g, self.g, measure=log_now, ema=self.ema)
        state.g_step += 1
        if not log_now:
            return None
        out: dict[str, Tensor | float] = {
            "d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
            "d_real": self._as_prob(out_real).mean(), "d_fake": self._as_prob(out_fake).mean(),
            "d_gap": (out_real.mean() - out_fake.mean()).detach(), "g_grad_norm": g_grad_norm,
            **extra, "sigma_max": self.d_sigma(d),
        }
        if p.instance_noise.std > 0:
            out["noise_std"] = noise_std
        return out


def build_trainer(params: Params, variant: str, data_dir: Path, device: torch.device,
                  dist=None, generate_only: bool = False) -> ConditionalTrainer:
    split = load_split(data_dir / "train.npz")
    return ConditionalTrainer(params, variant, to_unit_range(split.images),
                              torch.from_numpy(split.labels), device)
