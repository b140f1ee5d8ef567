"""The shared training driver every kind plugs into (n_critic D steps, then one G step).

Shape: `Trainer` owns what every kind of training needs once: the epoch loop, seeding per
(params.seed, variant, epoch), diagnostics rows, checkpoint state of every module and
optimiser, the EMA of G with its batch-norm refresh, and the step helpers that turn the loss
registry and penalties into D and G updates (`discriminator_objective`,
`update_discriminator`, `generator_objective`, `update_generator`). A kind
(ganlab.kinds.unconditional, .conditional, .cycle) supplies its nets, how an epoch begins
and `train_step`; `TrainingKind`, `SamplingKind` and `ScoringKind` name what the stages need of it, and
the registries ganlab.kinds.training, .sampling and .scoring map
a kind's name to its `Kind`.

Reproducibility: an epoch's batches and noise do not depend on what ran before it, which
lets a killed run resume from its last epoch checkpoint and finish bit-identical to an
uninterrupted one on CPU.

Speed: the training images live on the device as one tensor and are batched by index;
noise is drawn on the device; diagnostics stay as tensors and are read back (a host sync)
only every `log_every` G steps.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ganlab.config.params import Params, TrainParams
from ganlab.core.losses import (
    build_loss,
    clip_weights,
    gradient_penalty,
    instance_noise_std,
    outputs_and_zero_centred_penalties,
    r1_penalty,
    r2_penalty,
)
from ganlab.nets.build import SigmaTracker
from ganlab.runtime.distributed import DistContext
from ganlab.util import GanlabError, derive_seed

# The averaged generator's batch-norm statistics are recomputed from BN_BATCHES seeded batches of
# BN_BATCH_SIZE latents; a progress preview uses the first PREVIEW_BN_BATCHES of them.
BN_BATCHES = 16
BN_BATCH_SIZE = 256
PREVIEW_BN_BATCHES = 2

Critic = Callable[[Tensor], Tensor]


class DeferredOptimizer:
    """An optimiser built on first use. Constructing the first torch optimiser in a process
    imports torch._dynamo (1.4-1.9 s on 2 cores), which a stage that builds a trainer only
    for its nets and fixed inputs (quality) never needs. The optimiser holds no state until
    it steps, so building it later changes nothing."""

    def __init__(self, build: Callable[[], torch.optim.Optimizer]):
        self._build = build
        self._opt: torch.optim.Optimizer | None = None

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_build", "_opt"):
            raise AttributeError(name)
        if self._opt is None:
            self._opt = self._build()
        return getattr(self._opt, name)


def make_optimizer(p: TrainParams, params, lr: float) -> DeferredOptimizer:
    """`p.optimizer` over `params` at `lr`, built on first use (DeferredOptimizer)."""
    params = list(params)
    return DeferredOptimizer(lambda: _build_optimizer(p, params, lr))


def _build_optimizer(p: TrainParams, params: list, lr: float) -> torch.optim.Optimizer:
    # fused kernels (one pass over all parameters) where this torch build has them for
    # the device; the foreach (multi-tensor) path otherwise. Same update rule either way.
    if p.optimizer == "adam":
        try:
            return torch.optim.Adam(params, lr=lr, betas=p.betas, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(params, lr=lr, betas=p.betas, foreach=True)
    if p.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, foreach=True)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    g_step: int = 0
    d_step: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    run_id: str = ""
    train_seconds: float = 0.0
    monitor: dict = field(default_factory=dict)  # the snapshot monitor's state (early stop)
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
        self.optimizers: dict[str, DeferredOptimizer] = {}
        self.ema_updates = 0
        self.steps_per_epoch = 0
        self.total_d_steps = 0

    def set_budget(self, n_images: int, what: str = "training images") -> None:
        """`steps_per_epoch` (D steps in one pass over `n_images`) and `total_d_steps` for
        `epochs` passes; a batch larger than the images is refused, naming the key."""
        p = self.p
        self.steps_per_epoch = n_images // p.batch_size
        if self.steps_per_epoch == 0:
            raise GanlabError(f"variants.{self.variant}.batch_size: {p.batch_size} is larger than "
                              f"the {n_images} {what}")
        self.total_d_steps = self.steps_per_epoch * p.epochs

    # -- what a kind provides ---------------------------------------------------------
    def train_step(self, i: int, state: TrainState, log_now: bool) -> dict[str, Tensor | float] | None:
        """Advance by batch `i` of the epoch (one D step, and a G step when due); update
        `state.d_step`/`state.g_step`; return diagnostics (tensors or floats) when a G step that
        should be logged happened, else None."""
        raise NotImplementedError

    def sampler(self, preview: bool = False) -> nn.Module:
        """The generator used for samples: its moving average when `ema` is on, with batch
        statistics recomputed for the averaged weights.

        `preview` (a progress grid during training) recomputes them from the first
        PREVIEW_BN_BATCHES of the same seeded stream only and leaves the full recomputation
        due, so snapshots and the exported generator are the same as without previews: the
        full one cost 0.1 s an epoch, 10% of an MLP epoch (issue 25)."""
        if self.ema is None:
            return self.g
        if self.ema_stale and not (preview and self.ema_previewed):
            gen = torch.Generator(device=self.device).manual_seed(
                derive_seed(self.params.seed, self.variant, "ema-bn", self.ema_updates))
            self.refresh_batch_norm(self.ema_refresh_net(), lambda n: self.ema_refresh_inputs(n, gen),
                                    batches=PREVIEW_BN_BATCHES if preview else BN_BATCHES)
            self.ema.eval()
            self.ema_previewed = True
            self.ema_stale = preview
        return self.ema

    def ema_refresh_net(self) -> nn.Module:
        """What the EMA batch-norm refresh calls (a conditional kind adapts G(z, y))."""
        return self.ema

    def ema_refresh_inputs(self, n: int, gen: torch.Generator):
        return torch.randn(n, self.p.latent_dim, generator=gen, device=self.device)

    def _as_prob(self, out: Tensor) -> Tensor:
        # Mean D(x) as a probability for probabilistic losses; raw score otherwise.
        return torch.sigmoid(out.detach()) if self.loss.probabilistic else out.detach()


    def export(self) -> dict:
        """The blob saved as the variant's generator file."""
        raise NotImplementedError

    def side_outputs(self) -> dict[str, dict]:
        """Files saved beside the generator file, by name: `.json` as JSON, else torch tensors
        (the cycle kind's semantic classifiers); none by default."""
        return {}

    def progress_images(self, fixed_z: Tensor) -> Tensor:
        return self.sampler(preview=True)(fixed_z)

    def monitor_latent(self, n: int, gen: torch.Generator) -> Tensor:
        """The fixed inputs the quality monitor scores (ganlab.runtime.monitor), from its own stream."""
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
        self.ema_previewed = False
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
        distribution), before instance noise, and R2 likewise on the clean fakes (the
        generator's distribution); the gradient penalty on interpolates of the inputs D
        actually sees. `joint` runs both halves in one pass when D has no batch
        statistics (the same function, one dispatch instead of two).
        """
        p = self.p
        extra: dict[str, Tensor] = {}
        if ((p.r1 > 0 or p.r2 > 0) and joint is not None and noise_std <= 0 and p.gp == 0
                and not p.spectral_norm):
            # clean inputs: the loss's forward is the penalties' forward (one pass, not three;
            # spectral norm keeps three, as each training forward steps its power iteration)
            out_real, out_fake, r1, r2 = outputs_and_zero_centred_penalties(
                joint, real, fake, sample_dims=self.sample_dims)
            r1, r2 = (r1 if p.r1 > 0 else None), (r2 if p.r2 > 0 else None)
            real_in, fake_in = real, fake
        else:
            r1 = r1_penalty(critic_real, real, sample_dims=self.sample_dims) if p.r1 > 0 else None
            r2 = r2_penalty(critic_fake, fake, sample_dims=self.sample_dims) if p.r2 > 0 else None
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
        if r2 is not None:
            d_loss = d_loss + 0.5 * p.r2 * r2
            extra["r2"] = r2.detach()
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

    def generator_objective(self, critic: Critic, d: nn.Module, fake: Tensor, noise_std: float,
                            real: Tensor | None = None) -> Tensor:
        """G's loss through D, whose parameters take no gradient here.

        `real` is the step's real batch (paired with `fake` sample by sample). Only a loss
        that reads D(real) in G's objective (`Loss.g_needs_real`: relativistic) runs D on it,
        under no_grad after the fakes' pass, so the other losses' G steps are unchanged.
        """
        d.requires_grad_(False)
        try:
            out_fake = critic(self.input_noise(fake, noise_std))
            out_real = None
            if self.loss.g_needs_real:
                if real is None:
                    raise ValueError(f"loss {self.loss.name}: the G step needs the real batch")
                with torch.no_grad():
                    out_real = critic(self.input_noise(real, noise_std))
            return self.loss.g_loss(out_fake, out_real)
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
        # one multi-tensor call (on the CPU it runs each tensor's lerp_: the same arithmetic)
        torch._foreach_lerp_(list(ema.parameters()), list(g.parameters()), 1.0 - decay)
        self.ema_stale = True
        self.ema_previewed = False

    @torch.no_grad()
    def refresh_batch_norm(self, net: nn.Module, draw: Callable[[int], Tensor], batches: int = BN_BATCHES,
                           batch_size: int = BN_BATCH_SIZE) -> None:
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
        self.ema_previewed = False
        return TrainState(**ckpt["state"])


def timed_epoch(trainer: Trainer, state: TrainState) -> list[dict[str, float]]:
    t0 = time.perf_counter()
    rows = trainer.run_epoch(state)
    state.train_seconds += time.perf_counter() - t0
    return rows


# What the stages need of a kind, one contract per role, so that each stage's import closure
# (its DVC deps) holds only its role: a change to how a kind samples never retrains it.
@dataclass(frozen=True)
class TrainingKind:
    """The train stage's part (ganlab.kinds.training maps names to these).

    - `build_trainer(params, variant, data_dir, device, dist, generate_only=False)`: the kind's
      Trainer on its data (`generate_only`: it will only load weights and generate);
    - `log_models(run_id, trainer, variant, tags)`: the MLflow model(s), logged and registered;
    - `distributed`: trains data-parallel under torchrun.
    """

    name: str
    build_trainer: Callable[..., Trainer]
    log_models: Callable[..., list[dict]]
    distributed: bool = False


@dataclass(frozen=True)
class SamplingKind:
    """The sample stage's part (ganlab.kinds.sampling).

    - `build_sampler(p, blob)`: the sampler net a generator file's `state_dict` loads into;
    - `sample(params, variant, sampler, device, out_dir, echo)`: the sample stage's files;
    - `sample_file`: the one of them that evaluate scores.
    """

    name: str
    build_sampler: Callable[[TrainParams, dict], nn.Module]
    sample: Callable[..., dict]
    sample_file: str


@dataclass(frozen=True)
class ScoringKind:
    """The evaluate stage's part (ganlab.kinds.scoring).

    - `score(ctx, variant, path)`: every metric of one seed's sample file;
    - `summary(metrics, floor, n)`: the line evaluate prints;
    - `compares_to_floor`: scored beside metrics/floor.json (at its N).
    """

    name: str
    score: Callable[..., dict]
    summary: Callable[[dict, dict, int], str]
    sample_file: str
    compares_to_floor: bool = True
