"""`kind: cycle`: CycleGAN (Zhu et al. 2017) between MNIST (domain A) and UCI digits (B).

Two generators G: A -> B and F: B -> A (`CyclePair.ab`, `.ba`) and two patch critics D_A, D_B.
Per step, as in the paper's code: one generator update on
    L_adv(G, D_B) + L_adv(F, D_A) + lambda (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
    + identity * lambda (|G(b) - b|_1 + |F(a) - a|_1)
    + semantic * (CE(f_B(G(a)), argmax f_A(a)) + CE(f_A(F(b)), argmax f_B(b)))
(the last, CyCADA's semantic consistency, only with `cycle.semantic` > 0: see
ganlab.kinds.cycle.semantic), then one critic update each, the critics seeing fakes drawn
from a pool of the last `pool_size` generated images (Shrivastava et al. 2017) rather than
only the newest. The adversarial losses are any registry loss (default in params: least
squares, the paper's).

Unpaired: an epoch is one pass over A; B's indices come from B's own permutations (drawn from
the same epoch generator but independently of A's), so no image of A is ever tied to an
image of B. The GAN never reads a label: with `cycle.semantic` > 0 the labels of each
domain's training split pretrain that domain's frozen classifier (CyCADA pretrains f_S on the
labelled source), and the semantic loss compares the classifiers' own predictions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ganlab.config.params import Params
from ganlab.data.images import load_images, load_split, to_unit_range
from ganlab.kinds.base import Trainer, TrainState, make_optimizer
from ganlab.kinds.cycle.semantic import predict, semantic_classifiers, semantic_term
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


class GeneratorTerms(NamedTuple):
    """One generator update's objective and its parts (None: the term is off)."""

    total: Tensor
    adversarial: Tensor
    cycle: Tensor
    identity: Tensor | None
    semantic: Tensor | None
    fake_b: Tensor
    fake_a: Tensor


class CycleTrainer(Trainer):
    kind = "cycle"

    def __init__(self, params: Params, variant: str, real_a: Tensor, real_b: Tensor,
                 device: torch.device, labels: tuple[Tensor, Tensor] | None = None,
                 generate_only: bool = False):
        """`labels` (of real_a, of real_b) pretrain the semantic classifiers; needed only
        with `cycle.semantic` > 0. `generate_only`: a trainer that only loads weights and
        generates (the quality stage's), without the semantic classifiers; it cannot train."""

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
        self.semantic_provenance: dict | None = None
        self.generate_only = generate_only
        if p.cycle.semantic > 0 and not generate_only:
            if labels is None:
                raise GanlabError(f"variants.{variant}.cycle.semantic: the semantic classifiers "
                                  "need each domain's training labels")
            # frozen, checkpointed with the rest (a resumed run scores with the same nets)
            self.sem, self.semantic_provenance = semantic_classifiers(
                params.seed, (self.real, self.real_b), tuple(y.to(device) for y in labels), device)
            self.modules["sem"] = self.sem
            self._pseudo_labels()
        self.pool_a = ImagePool(p.cycle.pool_size)
        self.pool_b = ImagePool(p.cycle.pool_size)
        # an epoch is one pass over B (UCI, the smaller domain), each B batch paired with a
        # batch of A from A's own permutation
        self.set_budget(len(self.real_b), "UCI training images")

    def begin_epoch(self, epoch: int) -> None:
        if self.generate_only:
            raise GanlabError(f"train {self.variant}: this trainer was built to generate only "
                              "(no semantic classifiers); build_trainer(generate_only=False) trains")
        super().begin_epoch(epoch)
        perm_b = torch.randperm(len(self.real_b), generator=self.cpu_gen)
        # A's own permutation, drawn independently of B's: the pairing carries no information
        reps = math.ceil(len(perm_b) / len(self.real))
        perm_a = torch.cat([torch.randperm(len(self.real), generator=self.cpu_gen)
                            for _ in range(reps)])[: len(perm_b)]
        self.perm_a, self.perm_b = perm_a.to(self.device), perm_b.to(self.device)

    def _pseudo_labels(self) -> None:
        """argmax f_A(a) and argmax f_B(b) of every training image: the semantic loss's labels
        (the frozen classifiers' predictions, as CyCADA's p(f_S, x); no dataset label)."""
        self.sem_a = predict(self.sem["mnist"], self.real)
        self.sem_b = predict(self.sem["uci"], self.real_b)

    def train_modules(self) -> None:
        super().train_modules()
        if "sem" in self.modules:
            self.sem.eval()  # frozen: never in training mode

    def sampler(self, preview: bool = False) -> nn.Module:
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

    def generator_total(self, a: Tensor, b: Tensor, noise_std: float,
                        labels: tuple[Tensor, Tensor] | None = None) -> GeneratorTerms:
        """One generator update's objective: w (L_adv(G, D_B) + L_adv(F, D_A))
        + lambda |cycle|_1 + identity * lambda |identity|_1 + semantic * L_sem, where `labels`
        are the classifiers' labels of a and b (argmax f_A(a), argmax f_B(b)): the semantic term
        is on when `cycle.semantic` > 0."""
        c = self.p.cycle
        g_ab, g_ba, d_a, d_b = self.g.ab, self.g.ba, self.d.a, self.d.b
        cyc, fake_b, fake_a = cycle_l1_loss(g_ab, g_ba, a, b)
        # real b (a) is what a relativistic loss pairs G(a) (F(b)) with in D_B (D_A)
        adv = self.adversarial_weight * (
            self.generator_objective(d_b, d_b, fake_b, noise_std, real=b)
            + self.generator_objective(d_a, d_a, fake_a, noise_std, real=a))
        g_total = adv + c.lambda_cycle * cyc
        idt = None
        if c.identity > 0:
            idt = (g_ab(b) - b).abs().mean() + (g_ba(a) - a).abs().mean()
            g_total = g_total + c.identity * c.lambda_cycle * idt
        sem = None
        if c.semantic > 0:
            if labels is None:
                labels = (predict(self.sem["mnist"], a), predict(self.sem["uci"], b))
            # CyCADA eq. 4 (Hoffman et al. 2018) with a classifier per domain (semantic.py says
            # why): CE(f_B(G(a)), argmax f_A(a)) + CE(f_A(F(b)), argmax f_B(b)); the labels are
            # fixed targets, so the gradient reaches G and F through f_B and f_A, whose own
            # weights are frozen
            sem = (semantic_term(self.sem["uci"](fake_b), labels[0])
                   + semantic_term(self.sem["mnist"](fake_a), labels[1]))
            g_total = g_total + c.semantic * sem
        return GeneratorTerms(g_total, adv, cyc, idt, sem, fake_b, fake_a)

    def train_step(self, i: int, state: TrainState, log_now: bool) -> dict[str, Tensor | float]:
        bs = self.p.batch_size
        ia, ib = self.perm_a[i * bs : (i + 1) * bs], self.perm_b[i * bs : (i + 1) * bs]
        a, b = self.real.index_select(0, ia), self.real_b.index_select(0, ib)
        d_a, d_b = self.d.a, self.d.b
        noise_std = self.noise_std(state)
        # ---- both generators: adversarial + cycle + identity (+ semantic), one update ----
        labels = ((self.sem_a.index_select(0, ia), self.sem_b.index_select(0, ib))
                  if self.p.cycle.semantic > 0 else None)
        g_total, adv, cyc, idt, sem, fake_b, fake_a = self.generator_total(a, b, noise_std, labels)
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
        if sem is not None:
            row["semantic"] = sem.detach()
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
        if "sem" in self.modules:
            self._pseudo_labels()  # of the checkpoint's classifiers
        return st

    def side_outputs(self) -> dict[str, dict]:
        """With `cycle.semantic` > 0, the frozen classifiers the generators trained against,
        beside the generator: their weights and provenance (`.pt`), the provenance alone
        (`.json`, for the report). They are not the judges that score label preservation."""
        if self.semantic_provenance is None:
            return {}
        prov = {"role": "trained against by the generators (cycle.semantic); not the judges "
                        "(models/judge, models/judge_uci), which score label preservation",
                "semantic": self.p.cycle.semantic,
                "use": "L_sem = CE(f_uci(G(a)), argmax f_mnist(a)) + CE(f_mnist(F(b)), argmax f_uci(b))",
                "classifiers": self.semantic_provenance}
        weights = {d: {k: v.cpu() for k, v in m.state_dict().items()} for d, m in self.sem.items()}
        # wall-clock seconds in the JSON only: the weights file stays byte-reproducible
        timeless = {**prov, "classifiers": {d: {k: v for k, v in c.items() if k != "seconds"}
                                            for d, c in prov["classifiers"].items()}}
        return {"semantic_classifiers.json": prov,
                "semantic_classifiers.pt": {"state_dict": weights, "provenance": timeless}}


def build_trainer(params: Params, variant: str, data_dir: Path, device: torch.device,
                  dist=None, generate_only: bool = False) -> CycleTrainer:
    """Domain A is data/prepared (MNIST); B the UCI digits (data/uci), hashed into the resume key.
    Labels are read only for the semantic classifiers (`cycle.semantic` > 0, in a trainer that
    trains): plain CycleGAN is unpaired and unlabelled, and so is a trainer that only generates."""
    path_a, path_b = Path(data_dir) / "train.npz", Path(UCI_DIR) / "train.npz"
    if params.variant(variant).cycle.semantic > 0 and not generate_only:
        a, b = load_split(path_a), load_split(path_b)
        images_a, images_b = a.images, b.images
        labels = (torch.from_numpy(a.labels), torch.from_numpy(b.labels))
    else:
        images_a, images_b, labels = load_images(path_a), load_images(path_b), None
    trainer = CycleTrainer(params, variant, to_unit_range(images_a), to_unit_range(images_b),
                           device, labels, generate_only)
    trainer.extra_data_sha = file_sha256(path_b)
    return trainer
