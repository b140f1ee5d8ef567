"""The one adversarial training loop: n_critic D steps, then one G step, for every variant.

Reproducibility: every random draw comes from generators seeded by (params.seed, variant,
epoch), so an epoch's batches and noise do not depend on what ran before it. That is what
lets a killed run resume from its last epoch checkpoint and still finish bit-identical to an
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
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

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


def config_hash(p: TrainParams, seed: int, data_sha: str) -> str:
    blob = json.dumps({"p": flatten(p), "seed": seed, "data": data_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def grid_noise(params: Params, variant: str, n: int, latent_dim: int) -> Tensor:
    g = torch.Generator().manual_seed(derive_seed(params.seed, variant, "grid"))
    return torch.randn(n, latent_dim, generator=g)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    g_step: int = 0
    d_step: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    run_id: str = ""
    train_seconds: float = 0.0


class GanTrainer:
    """Holds the nets, optimisers and loss of one variant; `run_epoch` advances one epoch."""

    def __init__(self, params: Params, variant: str, real: Tensor, device: torch.device):
        self.params = params
        self.variant = variant
        self.p = p = params.variant(variant)
        self.device = device
        self.real = real.to(device)
        self.image_shape = tuple(real.shape[1:])
        # The saturating loss drives gradients into the denormal range, where x86 float
        # arithmetic is ~10x slower (measured: minimax 10-14 s/epoch vs 2.1 s flushed).
        torch.set_flush_denormal(True)
        torch.manual_seed(derive_seed(params.seed, variant, "init"))
        self.g, self.d = build_gan(p, self.image_shape)
        self.g.to(device)
        self.d.to(device)
        self.opt_g = make_optimizer(p, self.g.parameters(), p.lr)
        self.opt_d = make_optimizer(p, self.d.parameters(), p.d_learning_rate)
        self.ema = copy.deepcopy(self.g).eval() if p.ema > 0 else None
        if self.ema is not None:
            self.ema.requires_grad_(False)
        self.loss = build_loss(p.loss, p.ls_targets)
        self.sigma = SigmaTracker()
        self.joint_d = p.arch in ("mlp", "toy") or p.resolved_d_norm != "batch"
        self.steps_per_epoch = len(real) // p.batch_size
        if self.steps_per_epoch == 0:
            raise GanlabError(
                f"variants.{variant}.batch_size: {p.batch_size} is larger than the "
                f"{len(real)} training images"
            )
        self.total_d_steps = self.steps_per_epoch * p.epochs

    # -- pieces of one step ------------------------------------------------------------
    def _noise(self, n: int, gen: torch.Generator) -> Tensor:
        return torch.randn(n, self.p.latent_dim, generator=gen, device=self.device)

    def _d_input_noise(self, x: Tensor, std: float, gen: torch.Generator) -> Tensor:
        if std <= 0:
            return x
        return x + std * torch.randn(x.shape, generator=gen, device=x.device)

    def sampler(self) -> nn.Module:
        """The generator used for samples: its moving average when `ema` is on."""
        return self.ema if self.ema is not None else self.g

    def run_epoch(self, state: TrainState) -> list[dict[str, float]]:
        p, dev = self.p, self.device
        epoch = state.epoch
        cpu_gen = torch.Generator().manual_seed(derive_seed(self.params.seed, self.variant, epoch))
        gen = torch.Generator(device=dev).manual_seed(
            derive_seed(self.params.seed, self.variant, epoch, "noise")
        )
        perm = torch.randperm(len(self.real), generator=cpu_gen).to(dev)
        self.g.train()
        self.d.train()
        rows: list[dict[str, float]] = []
        pending: dict[str, Tensor] = {}
        bs = p.batch_size
        for i in range(self.steps_per_epoch):
            progress = state.d_step / max(self.total_d_steps, 1)
            noise_std = instance_noise_std(
                p.instance_noise.std, p.instance_noise.anneal, progress, p.instance_noise.half_life
            )
            real = self.real.index_select(0, perm[i * bs : (i + 1) * bs])
            # The D step right before a G step draws its fakes with G's graph kept, and the
            # G step reuses them through the updated D (as the PyTorch DCGAN example does):
            # one G forward per iteration instead of two. Other D steps need no graph.
            g_step_next = (state.d_step + 1) % p.n_critic == 0
            with torch.set_grad_enabled(g_step_next):
                fake_g = self.g(self._noise(bs, gen))
            fake = fake_g.detach()
            real_in = self._d_input_noise(real, noise_std, gen)
            fake_in = self._d_input_noise(fake, noise_std, gen)
            if self.joint_d:
                # no batch statistics in D: one pass over both halves is the same function
                out_real, out_fake = self.d(torch.cat([real_in, fake_in])).split(bs)
            else:
                out_real, out_fake = self.d(real_in), self.d(fake_in)
            d_loss = self.loss.d_loss(out_real, out_fake)
            extra: dict[str, Tensor] = {}
            if p.gp > 0:
                gp = gradient_penalty(self.d, real_in, fake_in, generator=gen)
                d_loss = d_loss + p.gp * gp
                extra["gp"] = gp.detach()
            if p.r1 > 0:
                r1 = r1_penalty(self.d, real_in)
                d_loss = d_loss + 0.5 * p.r1 * r1
                extra["r1"] = r1.detach()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            log_next = g_step_next and (state.g_step + 1) % p.log_every == 0
            if p.clip > 0:
                frac = clip_weights(self.d, p.clip, count=log_next)
                if log_next:
                    extra["clip_frac"] = frac
            state.d_step += 1
            if not g_step_next:
                continue
            # ---- G step through D, whose parameters take no gradient here ----
            self.d.requires_grad_(False)
            out_g = self.d(self._d_input_noise(fake_g, noise_std, gen))
            g_loss = self.loss.g_loss(out_g)
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.d.requires_grad_(True)
            log_now = (state.g_step + 1) % p.log_every == 0
            if log_now:
                g_grad_norm = torch.linalg.vector_norm(
                    torch.stack([q.grad.norm() for q in self.g.parameters() if q.grad is not None])
                )
            self.opt_g.step()
            if self.ema is not None:
                with torch.no_grad():
                    for pe, pg in zip(self.ema.parameters(), self.g.parameters()):
                        pe.lerp_(pg, 1.0 - p.ema)
                    for be, bg in zip(self.ema.buffers(), self.g.buffers()):
                        be.copy_(bg)
            state.g_step += 1
            if log_now:
                pending = {
                    "d_loss": d_loss.detach(),
                    "g_loss": g_loss.detach(),
                    "d_real": self._as_prob(out_real).mean(),
                    "d_fake": self._as_prob(out_fake).mean(),
                    # E D(x) - E D(G(z)) on raw outputs: the critic's Wasserstein estimate
                    # for critic losses (meaningful up to the Lipschitz constant).
                    "d_gap": (out_real.mean() - out_fake.mean()).detach(),
                    "g_grad_norm": g_grad_norm,
                    **extra,
                }
                row = {"step": float(state.g_step), "epoch": float(epoch + (i + 1) / self.steps_per_epoch)}
                row.update({k: float(v) for k, v in pending.items()})  # the one sync per log
                row["sigma_max"] = self.sigma.estimate(self.d)
                if p.instance_noise.std > 0:
                    row["noise_std"] = noise_std
                rows.append(row)
        state.epoch += 1
        return rows

    def _as_prob(self, out: Tensor) -> Tensor:
        # Mean D(x) as a probability for probabilistic losses; raw score otherwise.
        return torch.sigmoid(out.detach()) if self.loss.probabilistic else out.detach()

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self, state: TrainState, cfg_hash: str) -> dict:
        return {
            "config_hash": cfg_hash,
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sigma_vectors": dict(self.sigma.vectors),  # so resumed diagnostics match too
            "state": state.__dict__,
        }

    def load_state_dict(self, ckpt: dict) -> TrainState:
        self.g.load_state_dict(ckpt["g"])
        self.d.load_state_dict(ckpt["d"])
        if self.ema is not None and ckpt["ema"] is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.sigma.vectors = dict(ckpt.get("sigma_vectors", {}))
        return TrainState(**ckpt["state"])


def save_checkpoint(path: Path, blob: dict) -> None:
    save_torch(blob, path)


def load_checkpoint(path: Path, cfg_hash: str) -> dict | None:
    """The checkpoint at `path` if it belongs to this exact configuration, else None."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a torn or foreign file: start over rather than fail
        return None
    return blob if blob.get("config_hash") == cfg_hash else None


def timed_epoch(trainer: GanTrainer, state: TrainState) -> list[dict[str, float]]:
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


def run_train(params: Params, variant: str, data_dir: Path = Path("data/prepared"),
              echo=print) -> dict:
    """Train one variant; resume from its checkpoint when one for this exact config exists.

    Outputs: models/variants/<V>/ (generator.pt, progress grids, mlflow_run.json,
    timing.json), metrics/curves/<V>.csv (plots) and metrics/train/<V>.json (metrics).
    """
    from torchvision.utils import save_image
    from tqdm import tqdm

    from ganlab import tracking
    from ganlab.data.images import load_meta, load_split, to_unit_range
    from ganlab.util import resolve_device, write_json

    p = params.variant(variant)
    device = resolve_device(params.device)
    meta = load_meta(data_dir)
    split = load_split(data_dir / "train.npz")
    trainer = GanTrainer(params, variant, to_unit_range(split.images), device)
    cfg = config_hash(p, params.seed, meta["train_sha256"])
    ckpt_path = CHECKPOINTS_DIR / variant / f"{cfg}.pt"
    ckpt = load_checkpoint(ckpt_path, cfg)
    if ckpt is not None:
        state = trainer.load_state_dict(ckpt)
        echo(f"train {variant}: resuming from {ckpt_path} after epoch {state.epoch}/{p.epochs}")
    else:
        state = TrainState()
    if not state.run_id or not tracking.run_exists(state.run_id):
        run_params = {**flatten(p), "seed": params.seed, "variant": variant,
                      "dataset": meta["dataset"], "n_train": meta["n_train"]}
        state.run_id = tracking.start_run(
            variant, run_params, tracking.run_tags(variant, meta["train_sha256"])
        )
        tracking.log_dict(state.run_id, dataclasses.asdict(p), "params/variant.yaml")
    out_dir = VARIANTS_DIR / variant
    progress_dir = out_dir / "progress"
    progress_dir.mkdir(parents=True, exist_ok=True)
    fixed_z = grid_noise(params, variant, 64, p.latent_dim).to(device)
    bar = tqdm(total=p.epochs, initial=state.epoch, desc=f"train {variant}", unit="epoch",
               disable=None)
    last_ckpt = time.monotonic()
    while state.epoch < p.epochs:
        rows = timed_epoch(trainer, state)
        state.rows.extend(rows)
        tracking.log_metrics(state.run_id, rows)
        with torch.no_grad():
            sampler = trainer.sampler()
            was_training = sampler.training
            sampler.eval()
            grid = sampler(fixed_z).cpu()
            sampler.train(was_training)
        with atomic_path(progress_dir / f"epoch_{state.epoch:03d}.png", suffix=".png") as tmp:
            save_image(grid, tmp, nrow=8, normalize=True, value_range=(-1, 1), format="png")
        if time.monotonic() - last_ckpt >= CHECKPOINT_EVERY_SECONDS and state.epoch < p.epochs:
            save_checkpoint(ckpt_path, trainer.state_dict(state, cfg))
            last_ckpt = time.monotonic()
        if rows:
            bar.set_postfix(d_loss=f"{rows[-1]['d_loss']:.3f}", g_loss=f"{rows[-1]['g_loss']:.3f}")
        bar.update(1)
    bar.close()

    # Final outputs, each written whole (atomic rename).
    gen_blob = {"state_dict": trainer.sampler().state_dict(), "variant": variant,
                "image_shape": list(trainer.image_shape), "latent_dim": p.latent_dim,
                "config_hash": cfg, "ema": p.ema > 0}
    save_torch(gen_blob, out_dir / "generator.pt")
    tracking.write_run_file(out_dir / "mlflow_run.json", state.run_id)
    write_json(out_dir / "timing.json", {"train_seconds": round(state.train_seconds, 2),
                                         "device": str(device)})
    _write_curves(Path("metrics/curves") / f"{variant}.csv", state.rows)
    last = state.rows[-1] if state.rows else {}
    summary = {"g_steps": state.g_step, "d_steps": state.d_step}
    summary.update({f"final_{k}": round(v, 6) for k, v in last.items()
                    if k not in ("step", "epoch")})
    write_json(Path("metrics/train") / f"{variant}.json", summary)
    tracking.log_metrics(state.run_id, [{"step": state.g_step,
                                        "train_seconds": state.train_seconds}])
    tracking.log_artifacts(state.run_id, [progress_dir], "progress")
    tracking.log_artifacts(state.run_id, [out_dir / "generator.pt"], "model")
    ckpt_path.unlink(missing_ok=True)  # resume state is only needed while unfinished
    echo(f"train {variant}: {state.g_step} G steps in {state.train_seconds:.1f}s, "
         f"MLflow run {state.run_id}")
    return summary
