"""`kind: cycle`: CycleGAN (Zhu et al. 2017) between MNIST (domain A) and UCI digits (B).

Two generators G: A -> B and F: B -> A (`CyclePair.ab`, `.ba`) and two patch critics D_A, D_B.
Per step, as in the paper's code: one generator update on
    L_adv(G, D_B) + L_adv(F, D_A) + lambda (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
    + identity * lambda (|G(b) - b|_1 + |F(a) - a|_1)
then one critic update each, the critics seeing fakes drawn from a pool of the last
`pool_size` generated images (Shrivastava et al. 2017) rather than only the newest. The
adversarial losses are any registry loss (default in params: least squares, the paper's).

Unpaired: an epoch is one pass over A; B's indices come from B's own permutations (drawn from
the same epoch generator but independently of A's), so no image of A is ever tied to an
image of B. Labels are never loaded here.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ganlab.config.params import Params
from ganlab.data.images import load_split, to_unit_range
from ganlab.kinds.base import Trainer, TrainState, make_optimizer
from ganlab.nets.cycle import build_cycle_gan
from ganlab.runtime.paths import UCI_DIR
from ganlab.util import GanlabError, derive_seed, file_sha256


def cycle_l1_loss(g_ab, g_ba, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """|F(G(a)) - a|_1 + |G(F(b)) - b|_1 (per-pixel means), with G(a) and F(b) returned."""
    fake_b, fake_a = g_ab(a), g_ba(b)
    loss = (g_ba(fake_b) - a).abs().mean() + (g_ab(fake_a) - b).abs().mean()
    return loss, fake_b, fake_a


class ImagePool:
    """The last `size` generated images. Each query returns, per image, the new one or (with
    probability 1/2 once full) a stored one that it replaces, as in the CycleGAN code."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[Tensor] = []

    def query(self, batch: Tensor, gen: torch.Generator) -> Tensor:
        if self.size == 0:
            return batch
        out = []
        coins = torch.rand(len(batch), generator=gen, device=batch.device).tolist()
        picks = torch.randint(0, self.size, (len(batch),), generator=gen,
                              device=batch.device).tolist()
        for img, coin, pick in zip(batch.detach(), coins, picks):
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif coin < 0.5:
                out.append(self.images[pick])
                self.images[pick] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> Tensor | None:
        return torch.stack(self.images).cpu() if self.images else None

    def load(self, t: Tensor | None, device) -> None:
        self.images = [] if t is None else list(t.to(device).unbind(0))


class CycleTrainer(Trainer):
    kind = "cycle"

    def __init__(self, params: Params, variant: str, real_a: Tensor, real_b: Tensor,
                 device: torch.device):

        super().__init__(params, variant, device)
        p = self.p
        self.real, self.real_b = real_a.to(device), real_b.to(device)
        self.image_shape = tuple(real_a.shape[1:])
        torch.manual_seed(derive_seed(params.seed, variant, "init"))
        self.g, self.d = build_cycle_gan(p, self.image_shape)
        self.g.to(device)
        self.d.to(device)
        # one optimiser over both generators and one over both critics, as the paper's code
        self.opt_g = make_optimizer(p, self.g.parameters(), p.lr)
        self.opt_d = make_optimizer(p, self.d.parameters(), p.d_learning_rate)
        self.modules = {"g": self.g, "d": self.d}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}
        self.pool_a = ImagePool(p.cycle.pool_size)
        self.pool_b = ImagePool(p.cycle.pool_size)
        # an epoch is one pass over B (UCI, the smaller domain), each B batch paired with a
        # batch of A from A's own permutation
        self.steps_per_epoch = len(self.real_b) // p.batch_size
        if self.steps_per_epoch == 0:
            raise GanlabError(f"variants.{variant}.batch_size: {p.batch_size} is larger "
                              f"than the {len(self.real_b)} UCI training images")
        self.total_d_steps = self.steps_per_epoch * p.epochs

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        perm_b = torch.randperm(len(self.real_b), generator=self.cpu_gen)
        # A's own permutation, drawn independently of B's: the pairing carries no information
        reps = math.ceil(len(perm_b) / len(self.real))
        perm_a = torch.cat([torch.randperm(len(self.real), generator=self.cpu_gen)
                            for _ in range(reps)])[: len(perm_b)]
        self.perm_a, self.perm_b = perm_a.to(self.device), perm_b.to(self.device)

    def sampler(self) -> nn.Module:
        return self.g

    def export(self) -> dict:
        return {"state_dict": self.g.state_dict(), "variant": self.variant, "kind": self.kind,
                "image_shape": list(self.image_shape), "ema": False}

    def progress_images(self, fixed_z: Tensor) -> Tensor:
        """Rows: MNIST -> UCI-style -> back to MNIST, then UCI -> MNIST-style -> back."""
        a, b = self.real[:8], self.real_b[:8]
        ab, ba = self.g.ab(a), self.g.ba(b)
        return torch.cat([a, ab, self.g.ba(ab), b, ba, self.g.ab(ba)])

    def monitor_latent(self, n: int, gen: torch.Generator) -> Tensor:
        # the monitor scores images in the judge's (MNIST) domain: translations of fixed UCI digits
        idx = torch.randperm(len(self.real_b), generator=gen)[:n]
        return self.real_b.cpu().index_select(0, idx)

    def monitor_images(self, z: Tensor) -> Tensor:
        return self.g.ba(z.to(self.device))


    @property
    def adversarial_weight(self) -> float:
        """The generators' adversarial term at the paper's scale. The official code's G loss is
        nn.MSELoss, E(D(G(x)) - 1)^2, while D keeps 1/2 (real + fake); the registry's least
        squares G loss is 1/2 E(D - 1)^2 (Mao et al.), so the cycle kind doubles it. Against it,
        lambda_cycle = 10 and identity 0.5 weigh as in the paper (Zhu et al. 2017, eq. 3)."""
        return 2.0 if self.p.loss == "least_squares" else 1.0

    def generator_total(self, a: Tensor, b: Tensor, noise_std: float):
        """(total, adversarial, cycle, identity or None, G(a), F(b)) of one generator update:
        w (L_adv(G, D_B) + L_adv(F, D_A)) + lambda |cycle|_1 + identity * lambda |identity|_1."""
        c = self.p.cycle
        g_ab, g_ba, d_a, d_b = self.g.ab, self.g.ba, self.d.a, self.d.b
        cyc, fake_b, fake_a = cycle_l1_loss(g_ab, g_ba, a, b)
        adv = self.adversarial_weight * (self.generator_objective(d_b, d_b, fake_b, noise_std)
                                         + self.generator_objective(d_a, d_a, fake_a, noise_std))
        g_total = adv + c.lambda_cycle * cyc
        idt = None
        if c.identity > 0:
            idt = (g_ab(b) - b).abs().mean() + (g_ba(a) - a).abs().mean()
            g_total = g_total + c.identity * c.lambda_cycle * idt
        return g_total, adv, cyc, idt, fake_b, fake_a

    def train_step(self, i: int, state: TrainState, log_now: bool) -> dict[str, Tensor | float]:
        bs = self.p.batch_size
        a = self.real.index_select(0, self.perm_a[i * bs : (i + 1) * bs])
        b = self.real_b.index_select(0, self.perm_b[i * bs : (i + 1) * bs])
        d_a, d_b = self.d.a, self.d.b
        noise_std = self.noise_std(state)
        # ---- both generators: adversarial + cycle + identity, one update ----
        g_total, adv, cyc, idt, fake_b, fake_a = self.generator_total(a, b, noise_std)
        g_grad_norm = self.update_generator(g_total, self.opt_g, self.g, measure=log_now)
        state.g_step += 1
        # ---- both critics, on pooled fakes ----
        d_loss: Tensor | float = 0.0
        extra: dict[str, Tensor] = {}
        outs = []
        for d_x, real, fake, pool in ((d_a, a, fake_a, self.pool_a), (d_b, b, fake_b, self.pool_b)):
            loss_x, out_real, out_fake, extra_x = self.discriminator_objective(
                d_x, d_x, real, pool.query(fake.detach(), self.gen), noise_std)
            d_loss = d_loss + loss_x
            outs.append((out_real, out_fake))
            for k, v in extra_x.items():
                extra[k] = extra.get(k, 0.0) + v
        extra.update(self.update_discriminator(d_loss, self.opt_d, self.d, count_clipped=log_now))
        state.d_step += 1
        if not log_now:
            return None
        out_real = torch.cat([o[0].flatten() for o in outs])
        out_fake = torch.cat([o[1].flatten() for o in outs])
        row: dict[str, Tensor | float] = {
            "d_loss": d_loss.detach(), "g_loss": adv.detach(), "g_total": g_total.detach(),
            "cycle": cyc.detach(), "d_real": self._as_prob(out_real).mean(),
            "d_fake": self._as_prob(out_fake).mean(),
            "d_gap": (out_real.mean() - out_fake.mean()).detach(), "g_grad_norm": g_grad_norm,
            **extra, "sigma_max": self.d_sigma(self.d)}
        if idt is not None:
            row["identity"] = idt.detach()
        if self.p.instance_noise.std > 0:
            row["noise_std"] = noise_std
        return row

    def state_dict(self, state: TrainState, cfg_hash: str) -> dict:
        blob = super().state_dict(state, cfg_hash)
        blob["pools"] = {"a": self.pool_a.state(), "b": self.pool_b.state()}
        return blob

    def load_state_dict(self, ckpt: dict) -> TrainState:
        st = super().load_state_dict(ckpt)
        self.pool_a.load(ckpt["pools"]["a"], self.device)
        self.pool_b.load(ckpt["pools"]["b"], self.device)
        return st


def build_cycle_trainer(params: Params, variant: str, real_a: Tensor, device: torch.device
                        ) -> CycleTrainer:
    """Domain A is data/prepared (MNIST); B the UCI digits (data/uci), hashed into the resume key."""

    path = Path(UCI_DIR) / "train.npz"
    trainer = CycleTrainer(params, variant, real_a, to_unit_range(load_split(path).images), device)
    trainer.extra_data_sha = file_sha256(path)
    return trainer


def build_trainer(params: Params, variant: str, data_dir: Path, device: torch.device,
                  dist=None) -> CycleTrainer:
    split = load_split(data_dir / "train.npz")  # images only: the cycle kind reads no label
    return build_cycle_trainer(params, variant, to_unit_range(split.images), device)
