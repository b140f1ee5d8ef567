"""The shared training driver and the unconditional kind (n_critic D steps, then one G step).

Shape: `Trainer` owns what every kind of training needs once: the epoch loop, seeding per
(params.seed, variant, epoch), diagnostics rows, checkpoint state of every module and
optimiser, and the step helpers that turn the loss registry and penalties into D and G
updates (`discriminator_objective`, `update_discriminator`, `generator_objective`,
`update_generator`). A kind (`GanTrainer` here; conditional and cycle kinds elsewhere)
supplies its nets, how an epoch begins and `train_step`. `run_train` drives any kind.

Reproducibility: an epoch's batches and noise do not depend on what ran before it, which
lets a killed run resume from its last epoch checkpoint and finish bit-identical to an
uninterrupted one on CPU.

Speed: the training images live on the device as one tensor and are batched by index;
noise is drawn on the device; diagnostics stay as tensors and are read back (a host sync)
only every `log_every` G steps.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ganlab import tracking as _tracking
from ganlab.distributed import DistContext
from ganlab.latent import grid_noise
from ganlab.losses import (
    build_loss,
    clip_weights,
    gradient_penalty,
    instance_noise_std,
    r1_penalty,
)
from ganlab.nets import SigmaTracker, build_gan
from ganlab.params import Params, TrainParams, flatten
from ganlab.util import GanlabError, atomic_path, derive_seed, save_torch

Critic = Callable[[Tensor], Tensor]


def make_optimizer(p: TrainParams, params, lr: float) -> torch.optim.Optimizer:
    # fused kernels (one pass over all parameters) where this torch build has them for
    # the device; the foreach (multi-tensor) path otherwise. Same update rule either way.
    params = list(params)
    if p.optimizer == "adam":
        try:
            return torch.optim.Adam(params, lr=lr, betas=p.betas, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(params, lr=lr, betas=p.betas, foreach=True)
    if p.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, foreach=True)


def code_digest() -> str:
    """sha256 over the source of every ganlab module loaded in this process: the code a
    training actually runs. Part of the resume key, so a checkpoint written by older code
    is never continued by newer code (and recorded by DVC as the newer code's product)."""
    h = hashlib.sha256()
    files = sorted({m.__file__ for name, m in list(sys.modules.items())
                    if (name == "ganlab" or name.startswith("ganlab.")) and getattr(m, "__file__", None)})
    for f in files:
        h.update(f.rsplit("ganlab", 1)[-1].encode())
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def config_hash(p: TrainParams, seed: int, data_sha: str, device: torch.device | str = "cpu",
                code: str = "", world_size: int = 1) -> str:
    """The resume key: settings, seed, data, device, torch version, the code's digest and
    (under torchrun) the number of processes, which sets each rank's shard and noise."""
    key = {"p": flatten(p), "seed": seed, "data": data_sha, "device": str(device),
           "torch": torch.__version__, "code": code}
    if world_size > 1:
        key["world_size"] = world_size
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    g_step: int = 0
    d_step: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    run_id: str = ""
    train_seconds: float = 0.0
    quality: list[dict[str, float]] = field(default_factory=list)  # monitor checks so far
    quality_seconds: list[list[float]] = field(default_factory=list)  # [G step, train seconds]
    stopped_early: bool = False


class Trainer:
    """The driver every kind shares. A kind sets `self.modules` (everything a checkpoint
    restores, by name), `self.optimizers`, `steps_per_epoch`, `total_d_steps`, and
    implements `train_step`; it may override `begin_epoch`, `sampler` and `export`."""

    kind = "base"
    # leading dims shared by a batch of samples: 1 for (N, ...) batches; an ensemble of
    # members with inputs (E, N, ...) sets 2, so penalties take per-sample norms.
    sample_dims = 1
    # losses are means over everything; an ensemble of E members multiplies by E so each
    # member's parameters get exactly the gradient of its own mean loss.
    loss_scale = 1.0

    def __init__(self, params: Params, variant: str, device: torch.device,
                 dist: DistContext | None = None):
        self.params = params
        self.variant = variant
        self.dist = dist or DistContext()
        self.p = p = params.variant(variant)
        self.device = device
        # The saturating loss drives gradients into the denormal range, where x86 float
        # arithmetic is ~10x slower (measured: minimax 10-14 s/epoch vs 2.1 s flushed).
        torch.set_flush_denormal(True)
        self.loss = build_loss(p.loss, p.ls_targets)
        self.sigma = SigmaTracker()
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.ema_updates = 0
        self.steps_per_epoch = 0
        self.total_d_steps = 0

    # -- what a kind provides ---------------------------------------------------------
    def train_step(self, i: int, state: TrainState, log_now: bool) -> dict[str, Tensor | float] | None:
        """Advance by batch `i` of the epoch (one D step, and a G step when due); update
        `state.d_step`/`state.g_step`; return diagnostics (tensors or floats) when a G step that
        should be logged happened, else None."""
        raise NotImplementedError

    def sampler(self) -> nn.Module:
        raise NotImplementedError

    def export(self) -> dict:
        """The blob saved as the variant's generator file."""
        raise NotImplementedError

    def progress_images(self, fixed_z: Tensor) -> Tensor:
        return self.sampler()(fixed_z)

    def monitor_latent(self, n: int, gen: torch.Generator) -> Tensor:
        """The fixed inputs the quality monitor scores (ganlab.monitor), from its own stream."""
        return torch.randn(n, self.p.latent_dim, generator=gen)

    def monitor_images(self, z: Tensor) -> Tensor:
        """Images in the judge's domain generated from `monitor_latent`'s inputs."""
        return self.sampler()(z.to(self.device))

    def adopt_pair(self, g: nn.Module, d: nn.Module) -> None:
        """Take one G and one D: on the device, their optimisers, the EMA copy of G when
        `ema` is on, and all of it registered for checkpoints."""
        p = self.p
        self.g, self.d = g.to(self.device), d.to(self.device)
        self.opt_g = make_optimizer(p, self.g.parameters(), p.lr)
        self.opt_d = make_optimizer(p, self.d.parameters(), p.d_learning_rate)
        self.ema = copy.deepcopy(self.g).eval() if p.ema > 0 else None
        if self.ema is not None:
            self.ema.requires_grad_(False)
        self.ema_stale = False
        self.modules = {"g": self.g, "d": self.d, **({"ema": self.ema} if self.ema is not None else {})}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}

    # -- the epoch ----------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Seed the epoch's streams from (seed, variant, epoch) alone, and the rank under
        torchrun: the data order (`cpu_gen`) is shared so ranks take disjoint slices of one
        permutation; noise is each rank's own stream."""
        self.cpu_gen = torch.Generator().manual_seed(derive_seed(self.params.seed, self.variant, epoch))
        rank = ("rank", self.dist.rank) if self.dist.active else ()
        self.gen = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.params.seed, self.variant, epoch, "noise", *rank))

    def train_modules(self) -> None:
        for name, m in self.modules.items():
            if not name.startswith("ema"):
                m.train()

    def run_epoch(self, state: TrainState) -> list[dict[str, float]]:
        self.begin_epoch(state.epoch)
        self.train_modules()
        rows: list[dict[str, float]] = []
        for i in range(self.steps_per_epoch):
            log_now = (state.g_step + 1) % self.p.log_every == 0
            logged = self.train_step(i, state, log_now)
            if logged is not None:
                logged = self.dist.mean(logged, self.device)  # the global batch's averages
                row = {"step": float(state.g_step),
                       "epoch": float(state.epoch + (i + 1) / self.steps_per_epoch)}
                row.update({k: float(v) for k, v in logged.items()})  # the one sync per log
                rows.append(row)
        state.epoch += 1
        return rows

    # -- step helpers shared by the kinds -------------------------------------------------
    def progress(self, state: TrainState) -> float:
        return state.d_step / max(self.total_d_steps, 1)

    def noise_std(self, state: TrainState) -> float:
        n = self.p.instance_noise
        return instance_noise_std(n.std, n.anneal, self.progress(state), n.half_life)

    def latent(self, n: int) -> Tensor:
        return torch.randn(n, self.p.latent_dim, generator=self.gen, device=self.device)

    def input_noise(self, x: Tensor, std: float) -> Tensor:
        """Instance noise on D's inputs (Sønderby et al. 2016); identity when off."""
        if std <= 0:
            return x
        return x + std * torch.randn(x.shape, generator=self.gen, device=x.device)

    def interpolation_weights(self, real: Tensor) -> Tensor:
        shape = real.shape[: self.sample_dims] + (1,) * (real.dim() - self.sample_dims)
        return torch.rand(shape, generator=self.gen, device=real.device, dtype=real.dtype)

    def discriminator_objective(self, critic_real: Critic, critic_fake: Critic, real: Tensor,
                                fake: Tensor, noise_std: float,
                                joint: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
                                ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """D's loss from the registry plus its penalties: (loss, D(real), D(fake), extras).

        R1 is taken on the clean reals (Mescheder et al. 2018 define it on the data
        distribution), before instance noise; the gradient penalty on interpolates of the
        inputs D actually sees. `joint` runs both halves in one pass when D has no batch
        statistics (the same function, one dispatch instead of two).
        """
        p = self.p
        extra: dict[str, Tensor] = {}
        r1 = r1_penalty(critic_real, real, sample_dims=self.sample_dims) if p.r1 > 0 else None
        real_in = self.input_noise(real, noise_std)
        fake_in = self.input_noise(fake, noise_std)
        if joint is not None:
            out_real, out_fake = joint(real_in, fake_in)
        else:
            out_real, out_fake = critic_real(real_in), critic_fake(fake_in)
        d_loss = self.loss.d_loss(out_real, out_fake)
        if p.gp > 0:
            gp = gradient_penalty(critic_real, real_in, fake_in, eps=self.interpolation_weights(real_in),
                                  sample_dims=self.sample_dims)
            d_loss = d_loss + p.gp * gp
            extra["gp"] = gp.detach()
        if r1 is not None:
            d_loss = d_loss + 0.5 * p.r1 * r1
            extra["r1"] = r1.detach()
        return d_loss, out_real, out_fake, extra

    def update_discriminator(self, d_loss: Tensor, opt: torch.optim.Optimizer, d: nn.Module,
                             count_clipped: bool) -> dict[str, Tensor]:
        if self.loss_scale != 1.0:
            d_loss = d_loss * self.loss_scale
        opt.zero_grad(set_to_none=True)
        d_loss.backward()
        opt.step()
        extra: dict[str, Tensor] = {}
        if self.p.clip > 0:
            frac = clip_weights(d, self.p.clip, count=count_clipped)
            if count_clipped:
                extra["clip_frac"] = frac
        return extra

    def generator_objective(self, critic: Critic, d: nn.Module, fake: Tensor, noise_std: float
                            ) -> Tensor:
        """G's loss through D, whose parameters take no gradient here."""
        d.requires_grad_(False)
        try:
            return self.loss.g_loss(critic(self.input_noise(fake, noise_std)))
        finally:
            d.requires_grad_(True)

    def update_generator(self, g_loss: Tensor, opt: torch.optim.Optimizer, g: nn.Module,
                         measure: bool, ema: nn.Module | None = None) -> Tensor | None:
        """One G update; returns the gradient norm when `measure` (a log step)."""
        if self.loss_scale != 1.0:
            g_loss = g_loss * self.loss_scale
        opt.zero_grad(set_to_none=True)
        g_loss.backward()
        norm = None
        if measure:
            norm = torch.linalg.vector_norm(
                torch.stack([q.grad.norm() for q in g.parameters() if q.grad is not None]))
        opt.step()
        if ema is not None:
            self.update_ema(ema, g)
        return norm

    @torch.no_grad()
    def update_ema(self, ema: nn.Module, g: nn.Module) -> None:
        # Warm-up of the decay, (1 + t) / (10 + t) capped at `ema`: early on the average
        # follows G closely instead of dragging its random initialisation along (the role
        # of Adam-style bias correction; TensorFlow's ExponentialMovingAverage num_updates).
        self.ema_updates += 1
        t = self.ema_updates
        decay = min(self.p.ema, (1.0 + t) / (10.0 + t))
        for pe, pg in zip(ema.parameters(), g.parameters()):
            pe.lerp_(pg, 1.0 - decay)
        self.ema_stale = True

    @torch.no_grad()
    def refresh_batch_norm(self, net: nn.Module, draw: Callable[[int], Tensor], batches: int = 16,
                           batch_size: int = 256) -> None:
        """Recompute `net`'s batch-norm running statistics from its own outputs' inputs.

        An averaged generator's weights never produced the live G's running statistics, so
        sampling it with them mixes two networks (Yazıcı et al. 2019 recompute them).
        Cumulative averages (momentum None) over fixed, seeded batches.
        """
        bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        saved = [(m, m.momentum) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        was = net.training
        net.train()
        for _ in range(batches):
            net(draw(batch_size))
        net.train(was)
        for m, mom in saved:
            m.momentum = mom

    def d_sigma(self, d: nn.Module) -> float:
        return self.sigma.estimate(d)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self, state: TrainState, cfg_hash: str) -> dict:
        return {
            "config_hash": cfg_hash,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "sigma_vectors": dict(self.sigma.vectors),  # so resumed diagnostics match too
            "ema_updates": self.ema_updates,
            "state": dict(state.__dict__),
        }

    def load_state_dict(self, ckpt: dict) -> TrainState:
        for k, m in self.modules.items():
            m.load_state_dict(ckpt["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        self.sigma.vectors = dict(ckpt.get("sigma_vectors", {}))
        self.ema_updates = int(ckpt.get("ema_updates", 0))
        self.ema_stale = True
        return TrainState(**ckpt["state"])


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
        self.steps_per_epoch = n_real // p.batch_size
        if self.steps_per_epoch == 0:
            raise GanlabError(
                f"variants.{variant}.batch_size: {p.batch_size} is larger than the "
                f"{n_real} training images"
            )
        self.total_d_steps = self.steps_per_epoch * p.epochs

    # hooks an ensemble of members overrides (ganlab.toy_ensemble)
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

    def sampler(self) -> nn.Module:
        """The generator used for samples: its moving average when `ema` is on, with batch
        statistics recomputed for the averaged weights."""
        if self.ema is None:
            return self.g
        if self.ema_stale:
            gen = torch.Generator(device=self.device).manual_seed(
                derive_seed(self.params.seed, self.variant, "ema-bn", self.ema_updates))
            self.refresh_batch_norm(self.ema_refresh_net(), lambda n: self.ema_refresh_inputs(n, gen))
            self.ema.eval()
            self.ema_stale = False
        return self.ema

    def ema_refresh_net(self) -> nn.Module:
        """What the EMA batch-norm refresh calls (a conditional kind adapts G(z, y))."""
        return self.ema

    def ema_refresh_inputs(self, n: int, gen: torch.Generator):
        return torch.randn(n, self.p.latent_dim, generator=gen, device=self.device)

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
        g_loss = self.generator_objective(self.d, self.d, fake_g, noise_std)
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

    def _as_prob(self, out: Tensor) -> Tensor:
        # Mean D(x) as a probability for probabilistic losses; raw score otherwise.
        return torch.sigmoid(out.detach()) if self.loss.probabilistic else out.detach()


def save_checkpoint(path: Path, blob: dict) -> None:
    save_torch(blob, path)


def load_checkpoint(path: Path, cfg_hash: str) -> dict | None:
    """The checkpoint at `path` if it belongs to this exact configuration, else None.

    weights_only: a checkpoint holds tensors and plain types only, so nothing in a file
    dropped into .ganlab/ can run code when it is loaded."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn, foreign or unsafe file: start over rather than fail
        return None
    return blob if blob.get("config_hash") == cfg_hash else None


def timed_epoch(trainer: Trainer, state: TrainState) -> list[dict[str, float]]:
    t0 = time.perf_counter()
    rows = trainer.run_epoch(state)
    state.train_seconds += time.perf_counter() - t0
    return rows


# ---- the `train` stage ----------------------------------------------------------------

VARIANTS_DIR = Path("models/variants")
CHECKPOINTS_DIR = Path(".ganlab/checkpoints")
# A checkpoint (G, D and both optimisers: ~24 MB for the seed MLP) at most this often, always
# at an epoch boundary so a resumed run stays bit-identical. Every epoch cost ~15% of training.
CHECKPOINT_EVERY_SECONDS = 15.0


def _write_curves(path: Path, rows: list[dict[str, float]]) -> None:
    cols = list(rows[0]) if rows else ["step"]
    lines = [",".join(cols)]
    lines += [",".join(f"{r.get(c, float('nan')):.6g}" for c in cols) for r in rows]
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def build_trainer(params: Params, variant: str, data_dir: Path, device: torch.device,
                  dist: DistContext | None = None) -> Trainer:
    """The trainer of the variant's kind, on the prepared data it trains on."""
    from ganlab.data.images import load_split, to_unit_range

    split = load_split(data_dir / "train.npz")
    kind = params.variant(variant).kind
    if kind != "unconditional" and dist is not None and dist.active:
        raise GanlabError(f"variants.{variant}.kind: {kind!r} trains in one process; torchrun "
                          "(distributed.nproc > 1) takes unconditional variants")
    if kind == "conditional":
        from ganlab.train_conditional import ConditionalTrainer

        return ConditionalTrainer(params, variant, to_unit_range(split.images),
                                  torch.from_numpy(split.labels), device)
    if kind == "cycle":
        from ganlab.train_cycle import build_cycle_trainer

        return build_cycle_trainer(params, variant, to_unit_range(split.images), device)
    return GanTrainer(params, variant, to_unit_range(split.images), device, dist)


def _finite(x: float) -> float:
    # JSON has no inf/NaN: a diverged check's FID is written as -1 (documented in README)
    return round(float(x), 6) if math.isfinite(x) else -1.0


def _make_monitor(params: Params, variant: str, data_dir: Path, device: torch.device,
                  trainer: Trainer, state: TrainState):
    """The quality monitor of this training, replayed up to a resumed state; None if off."""
    if params.monitor.every == 0:
        return None
    from ganlab.data.images import load_split, to_unit_range
    from ganlab.judge_net import JudgeExtractor, load_judge
    from ganlab.monitor import QualityMonitor, count_step_flops

    ext = JudgeExtractor(load_judge(device=device), device)
    real = to_unit_range(load_split(data_dir / "train.npz").images)
    flops_g, flops_d = count_step_flops(lambda: build_trainer(params, variant, data_dir, device))
    mon = QualityMonitor(params, variant, real, ext, trainer.monitor_latent, flops_g, flops_d)
    for row in state.quality:  # a resumed run continues the detector where it was
        mon.detector.update(int(row["step"]), row["diversity_judge"])
    mon.rows = state.quality
    mon.seconds = state.quality_seconds
    return mon


def _monitor_check(monitor, trainer: Trainer, state: TrainState, logged_upto: int) -> None:
    from ganlab import tracking

    sampler = trainer.sampler()
    was_training = sampler.training
    sampler.eval()
    with torch.no_grad():
        images = trainer.monitor_images(monitor.z).cpu()
    sampler.train(was_training)
    row = monitor.check(images, state.g_step, state.epoch, state.d_step, state.train_seconds,
                        lambda: trainer.sampler().state_dict())
    if state.g_step > logged_upto:
        logged = {"step": state.g_step, "train_seconds": state.train_seconds,
                  **{f"quality/{k}": v for k, v in row.items()
                     if k not in ("step", "epoch") and math.isfinite(v)}}
        tracking.log_metrics(state.run_id, [logged])



@torch.no_grad()
def _eval_grid(trainer: Trainer, z: Tensor) -> Tensor:
    sampler = trainer.sampler()
    was_training = sampler.training
    sampler.eval()
    grid = trainer.progress_images(z).cpu()
    sampler.train(was_training)
    return grid


@_tracking.fail_run_on_error  # a raising training ends its MLflow run FAILED (KILLED on Ctrl-C)
def run_train(params: Params, variant: str, data_dir: Path = Path("data/prepared"),
              echo=print, seed: int | None = None) -> dict:
    """Train one variant with training seed `seed` (default: the first of `seeds`); resume
    from its checkpoint when one for this exact config exists.

    Outputs of the first seed: models/variants/<V>/ (generator.pt, progress grids,
    mlflow_run.json, timing.json), metrics/curves/<V>.csv (plots), metrics/train/<V>.json
    (metrics). Every other seed writes all of its outputs under models/variants/<V>/seeds/<s>/.
    """
    from ganlab import distributed
    from ganlab.data.images import load_meta
    from ganlab.util import resolve_device

    p = params.variant(variant)
    seed = params.training_seed(seed)  # a seed outside `seeds` is refused before any work
    # the training seeds everything the kinds draw (init, batches, noise): derive_seed(seed, ...)
    params = dataclasses.replace(params, seed=seed)
    base_device = resolve_device(params.device)
    meta = load_meta(data_dir)
    dist = distributed.init(base_device)
    try:
        return _run_train(params, variant, data_dir, echo, p, base_device, meta, dist)
    finally:
        dist.shutdown()


def _run_train(params: Params, variant: str, data_dir: Path, echo, p: TrainParams,
               base_device: torch.device, meta: dict, dist: DistContext) -> dict:
    """run_train's body on one rank. Under torchrun every rank trains its shard; rank 0
    alone reads the checkpoint (and hands it to the others), logs to MLflow and writes
    progress, checkpoints and outputs; the others wait at the closing barrier."""
    from tqdm import tqdm

    from ganlab import tracking
    from ganlab.grid import save_png
    from ganlab.util import write_json

    if p.batch_size % dist.world_size:
        raise GanlabError(f"variants.{variant}.batch_size: {p.batch_size} does not split evenly across "
                          f"the {dist.world_size} torchrun processes (it is the global batch)")
    main = dist.is_main
    if not main:
        echo = _silent
    device = dist.device(base_device)
    trainer = build_trainer(params, variant, data_dir, device, dist)
    # a kind that reads more data than data/prepared (cycle: the UCI digits) names its hash
    data_sha = meta["train_sha256"] + getattr(trainer, "extra_data_sha", "")
    cfg = config_hash(p, params.seed, data_sha, base_device, code_digest(), dist.world_size)
    ckpt_path = CHECKPOINTS_DIR / variant / f"{cfg}.pt"
    ckpt = dist.broadcast(load_checkpoint(ckpt_path, cfg) if main else None)
    if ckpt is not None:
        state = trainer.load_state_dict(ckpt)
        echo(f"train {variant}: resuming from {ckpt_path} after epoch {state.epoch}/{p.epochs}")
    else:
        state = TrainState()
    if not main:
        return _follow(trainer, state, p, params.monitor.every > 0 and dist.active, dist)
    # -- MLflow: end dead runs of this config, then open (or reopen, on resume) ours --
    tracking.supersede_stale_runs(variant, cfg, keep=state.run_id)
    # Rows up to this G step are already in MLflow: a resumed run logged the epochs after
    # its last checkpoint before it was killed, and must not log them twice.
    logged_upto = -1
    if dist.active:
        echo(f"train {variant}: {dist.world_size} processes ({dist.backend}), "
             f"{p.batch_size // dist.world_size} images each per step")
    if state.run_id and tracking.run_exists(state.run_id):
        logged_upto = tracking.last_logged_step(state.run_id, "d_loss")
        tracking.reopen(state.run_id)
    else:
        run_params = {**flatten(p), "seed": params.seed, "variant": variant,
                      "dataset": meta["dataset"], "n_train": meta["n_train"],
                      **({"world_size": dist.world_size} if dist.active else {})}
        tags = tracking.run_tags(variant, meta["train_sha256"], p, cfg)
        tags["seed"] = str(params.seed)
        if params.seed_dir(params.seed) != Path():  # a replica seed: named apart in the UI
            tags["mlflow.runName"] = f"{variant}-seed{params.seed}"
        state.run_id = tracking.start_run(variant, run_params, tags)
        tracking.log_dict(state.run_id, dataclasses.asdict(p), "params/variant.yaml")
        tracking.log_train_input(state.run_id, meta, data_dir)
    sub = params.seed_dir(params.seed)
    first_seed = sub == Path()
    out_dir = VARIANTS_DIR / variant / sub
    progress_dir = out_dir / "progress"
    progress_dir.mkdir(parents=True, exist_ok=True)
    fixed_z = grid_noise(params, variant, 64, p.latent_dim).to(device)
    monitor = _make_monitor(params, variant, data_dir, device, trainer, state)
    bar = tqdm(total=p.epochs, initial=state.epoch, desc=f"train {variant}", unit="epoch",
               disable=None)
    last_ckpt = time.monotonic()
    if state.epoch == 0:  # MLflow's image view opens at step 0: the untrained generator goes there
        tracking.log_image(state.run_id, _eval_grid(trainer, fixed_z), "progress", step=0)
    while state.epoch < p.epochs:
        rows = timed_epoch(trainer, state)
        state.rows.extend(rows)
        tracking.log_metrics(state.run_id, [r for r in rows if r["step"] > logged_upto])
        grid = _eval_grid(trainer, fixed_z)
        with atomic_path(progress_dir / f"epoch_{state.epoch:03d}.png", suffix=".png") as tmp:
            save_png(grid, tmp, nrow=8)
        tracking.log_image(state.run_id, grid, "progress", step=state.epoch)  # UI steps through it
        stop = False
        if monitor is not None and monitor.due(state.epoch, state.epoch == p.epochs):
            _monitor_check(monitor, trainer, state, logged_upto)
            stop = monitor.should_stop
        if monitor is not None and dist.active:
            dist.broadcast(stop)  # the other ranks stop at the same epoch (see _follow)
        if stop:
            state.stopped_early = True
            if monitor.best_state is not None:
                trainer.sampler().load_state_dict(monitor.best_state)
            echo(f"train {variant}: collapse warning at G step {state.g_step}; stopped early, "
                 f"keeping the most diverse generator (G step {monitor.detector.best_step})")
            break
        if time.monotonic() - last_ckpt >= CHECKPOINT_EVERY_SECONDS and state.epoch < p.epochs:
            save_checkpoint(ckpt_path, trainer.state_dict(state, cfg))
            last_ckpt = time.monotonic()
        if rows:
            bar.set_postfix(d_loss=f"{rows[-1]['d_loss']:.3f}", g_loss=f"{rows[-1]['g_loss']:.3f}")
        bar.update(1)
    bar.close()

    # Final outputs, each written whole (atomic rename).
    save_torch({**trainer.export(), "config_hash": cfg}, out_dir / "generator.pt")
    tracking.write_run_file(out_dir / "mlflow_run.json", state.run_id)
    # wall-clock seconds are not reproducible, so they stay out of DVC's metrics/plots files
    write_json(out_dir / "timing.json", {"train_seconds": round(state.train_seconds, 2),
                                         "device": str(device),
                                         **({"world_size": dist.world_size} if dist.active else {}),
                                         "quality_seconds": state.quality_seconds})
    # the first seed's curves and summaries are the variant's DVC plots and metrics; another
    # seed keeps its own beside its model
    _write_curves(Path("metrics/curves") / f"{variant}.csv" if first_seed else out_dir / "curves.csv",
                  state.rows)
    if monitor is not None:
        from ganlab.monitor import write_quality_csv

        write_quality_csv(Path("metrics/quality") / f"{variant}.csv" if first_seed
                          else out_dir / "quality.csv", state.quality)
    last = state.rows[-1] if state.rows else {}
    summary = {"g_steps": state.g_step, "d_steps": state.d_step,
               "stopped_early": state.stopped_early}
    if monitor is not None:
        summary.update(monitor.summary())
        if state.quality:
            q = state.quality[-1]
            summary.update({"monitor_fid_judge": _finite(q["fid_judge"]),
                            "monitor_gflops": q["gflops"]})
    summary.update({f"final_{k}": round(v, 6) for k, v in last.items()
                    if k not in ("step", "epoch")})
    write_json(Path("metrics/train") / f"{variant}.json" if first_seed else out_dir / "train.json",
               summary)
    if monitor is None:
        tracking.log_metrics(state.run_id, [{"step": state.g_step,
                                            "train_seconds": state.train_seconds}])
    # -- MLflow: the generator(s) as registered models, then the run ends with the stage --
    # (a replica seed is not registered: `models:/ganlab-<V>` stays the first seed's model;
    # its weights are in models/variants/<V>/seeds/<s>/)
    if first_seed:
        from ganlab.mlmodel import log_trainer_models

        logged = log_trainer_models(state.run_id, trainer, variant,
                                    {"variant": variant, "config_hash": cfg})
        tracking.log_metrics(state.run_id, [{"step": state.g_step, "model_log_seconds":
                                             sum(m["seconds"] for m in logged)}])
    tracking.set_terminated(state.run_id)
    ckpt_path.unlink(missing_ok=True)  # resume state is only needed while unfinished
    label = variant if first_seed else f"{variant} seed {params.seed}"
    echo(f"train {label}: {state.g_step} G steps in {state.train_seconds:.1f}s, "
         f"MLflow run {state.run_id}")
    dist.barrier()  # the other ranks end only once the outputs are written
    return summary


def _silent(*_args, **_kwargs) -> None:
    pass


def _follow(trainer: Trainer, state: TrainState, p: TrainParams, monitored: bool,
            dist: DistContext) -> dict:
    """A rank other than 0: the same epochs in lockstep, no outputs. Rank 0 broadcasts after
    each epoch whether the quality monitor stopped the run."""
    while state.epoch < p.epochs:
        timed_epoch(trainer, state)
        if monitored and dist.broadcast(None):
            break
    dist.barrier()
    return {}
