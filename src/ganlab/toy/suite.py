"""The mode-coverage suite: each loss variant trained on 2-D mixtures with known modes.

Protocol of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018): train a small
MLP GAN on ring8 / grid25, draw `n_eval` points from the final generator and count covered
modes, the share of high-quality points and the KL of the mode histogram from uniform
(`ganlab.metrics.modes.score_modes`). Several seeds per cell give a mean and its standard
error, because single toy runs are notoriously seed-dependent.

A run keeps a variant's loss, penalties, optimiser and n_critic and swaps in the toy nets
and the suite's budget (`toy_variant_settings`). Every (dataset, seed) member of one
variant trains at once in an `EnsembleTrainer` (the project's `GanTrainer` with a member
dimension), so the suite pays Python dispatch once per step instead of once per member.
The budget counts G steps: a check every `check_every` G steps is one trainer epoch of
`check_every x n_critic` D steps.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.config.params import Params, TrainParams, parse_params
from ganlab.config.toy import ToySuiteParams, check_steps, lr_factor, snapshot_steps, toy_skip_reason
from ganlab.core.collapse import CollapseDetector, diversity_signal, mean_pairwise_distance
from ganlab.core.stats import mean_ci
from ganlab.data.toy import toy_dataset
from ganlab.kinds.base import TrainState
from ganlab.kinds.unconditional.train import GanTrainer
from ganlab.metrics.modes import plot_points, score_modes
from ganlab.nets.toy_ensemble import load_member_tensors, member_tensors
from ganlab.toy.ensemble import EnsembleTrainer, Member, set_lr_factor
from ganlab.util import GanlabError, atomic_path, derive_seed, write_json

# Large enough that run_epoch never logs: the suite reads nothing from its rows, and each
# log costs a host sync plus a power iteration over D's layers.
NO_LOGGING = 1_000_000
N_SIGMA = 3.0  # the papers' high-quality radius, in mode standard deviations


def toy_variant_settings(variant_dict: Mapping[str, Any], toy: ToySuiteParams,
                         name: str | None = None) -> dict | None:
    """A main variant's settings recast for the toy suite, or None to skip it.

    A variant with its own toy settings (`toy.variants[name]`) takes them over its image
    settings: its `lr` (and `d_lr`, else its lr) are the toy rates as written, its `betas`
    win over `toy.betas`, and n_critic / clip / gp / r1 / r2 / optimizer replace the variant's.

    Kept from the variant: loss, ls_targets, clip, gp, r1, r2, spectral_norm, instance_noise,
    optimizer, lr / d_lr (times `toy.lr_scale`; D's also times `toy.d_lr_ratio`), betas
    (Adam variants take `toy.betas` when it is set), n_critic, ema.
    Replaced: arch -> toy; width, latent_dim, batch_size from `toy`; epochs (the suite
    counts G steps itself); log_every (off); d_norm -> none (the toy D has no
    normalisation, and saying so lets the trainer run real and fake through D in one pass).

    Conditional and cycle kinds are skipped (None): the mixtures have no labels and no
    second domain. Variants with `arch: dcgan` are skipped (None): their settings (width in channels,
    epochs) are tuned for conv nets on images, and their loss is already covered by the
    MLP variant with the same loss.
    """
    settings = copy.deepcopy(dict(variant_dict))
    if toy_skip_reason(settings.get("arch", "mlp"), settings.get("kind", "unconditional")):
        return None
    own = dict(toy.variants.get(name, {})) if name is not None else {}
    lr = float(settings.get("lr", TrainParams.lr))
    d_lr = float(settings.get("d_lr", TrainParams.d_lr)) or lr  # d_lr 0 means "G's lr"
    settings["lr"] = lr * toy.lr_scale
    settings["d_lr"] = d_lr * toy.lr_scale * toy.d_lr_ratio
    if "lr" in own:  # the variant's own toy rates, as written (D's: its d_lr, else its lr)
        settings["lr"] = settings["d_lr"] = float(own["lr"])
    if own.get("d_lr"):
        settings["d_lr"] = float(own["d_lr"])
    settings.update({k: v for k, v in own.items() if k not in ("lr", "d_lr")})
    if toy.betas and "betas" not in own and settings.get("optimizer", TrainParams.optimizer) == "adam":
        settings["betas"] = list(toy.betas)
    settings.update(arch="toy", width=toy.width, latent_dim=toy.latent_dim,
                    batch_size=toy.batch_size, epochs=1, log_every=NO_LOGGING, d_norm="none")
    return settings


def members_of(cfg: ToySuiteParams) -> list[Member]:
    return [Member(d, int(s)) for d in cfg.datasets for s in cfg.seeds]


def member_params(variant_name: str, settings: Mapping[str, Any], member: Member) -> Params:
    """The Params a solo `GanTrainer` of this member gets (its seed names the dataset)."""
    return parse_params({"seed": member.trainer_seed, "device": "cpu",
                         "variants": {variant_name: dict(settings)}})


def member_data(member: Member, cfg: ToySuiteParams, n: int) -> dict:
    """A member's training points in training units, and what is needed to score it.

    Training runs in standardised units (one scale for both axes, so the geometry is
    kept): the grid (+-4) and the ring (radius 1) then reach the nets at the same scale
    and one lr serves both. Everything scored, checked or plotted is in the data's units.
    """
    real, centers, std = toy_dataset(member.dataset, n, member.data_seed)
    scale = float(real.std()) if cfg.standardize else 1.0
    return {"real": real / scale, "centers": centers, "std": std, "scale": scale,
            "spread": mean_pairwise_distance(real[: min(len(real), 2000)])}


def chunk_d_steps(cfg: ToySuiteParams, n_critic: int) -> int:
    return cfg.check_every * n_critic


def advance(trainer: GanTrainer, state: TrainState, cfg: ToySuiteParams, to_g_step: int) -> None:
    """Train up to G step `to_g_step` as one trainer epoch, at the schedule's lr for it."""
    n_critic = trainer.p.n_critic
    set_lr_factor(trainer, lr_factor(cfg, state.g_step))
    trainer.steps_per_epoch = (to_g_step - state.g_step) * n_critic
    trainer.run_epoch(state)


@torch.no_grad()
def generate(trainer: GanTrainer, z: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Points from the sampler (E, n, 2) for noise z (E, n, latent), in the data's units."""
    g = trainer.sampler()
    was_training = g.training
    g.eval()
    out = g(z.to(trainer.device)).detach().cpu() * scales[:, None, None]
    g.train(was_training)
    return out


def train_variant(variant_name: str, settings: Mapping[str, Any], cfg: ToySuiteParams,
                  log: Callable[[str], None] | None = None) -> list[dict]:
    """Train every member of `cfg` (datasets x seeds) for one variant, batched; per member
    (in `members_of(cfg)` order) a dict of its scores, samples and diagnostics.

    With `early_stop_on_collapse`, a member whose collapse warning fires is scored with
    its most diverse generator (the best check); it keeps stepping with the others (its
    numbers do not depend on that) and the run ends once every member has stopped.
    """
    cfg.check()
    members = members_of(cfg)
    params = [member_params(variant_name, settings, m) for m in members]
    p = params[0].variant(variant_name)
    if p.arch != "toy":
        raise GanlabError(f"toy suite: variant {variant_name} has arch {p.arch!r}, expected toy")
    n = max(cfg.n_train, chunk_d_steps(cfg, p.n_critic) * cfg.batch_size)
    data = [member_data(m, cfg, n) for m in members]
    trainer = EnsembleTrainer(params, variant_name, [d["real"] for d in data], torch.device("cpu"))
    trainer.total_d_steps = cfg.g_steps * p.n_critic  # instance-noise annealing spans the run
    scales = torch.tensor([d["scale"] for d in data])
    gens = [torch.Generator().manual_seed(derive_seed(m.trainer_seed, variant_name, "toy-eval"))
            for m in members]
    z_check = torch.stack([torch.randn(cfg.n_check, p.latent_dim, generator=g) for g in gens])
    z_eval = torch.stack([torch.randn(cfg.n_eval, p.latent_dim, generator=g) for g in gens])

    E = len(members)
    detectors = [CollapseDetector(cfg.collapse_threshold, cfg.collapse_patience) for _ in members]
    best: list[list[torch.Tensor] | None] = [None] * E
    stopped = [False] * E
    stop_step = [cfg.g_steps] * E
    snaps = set(snapshot_steps(cfg.g_steps, cfg.n_snapshots, cfg.check_every))
    snapshots: list[dict[int, np.ndarray]] = [{} for _ in members]
    state = TrainState()
    t0 = time.perf_counter()
    for step in check_steps(cfg.g_steps, cfg.check_every):
        advance(trainer, state, cfg, step)
        pts = generate(trainer, z_check, scales)
        for e in range(E):
            if stopped[e]:
                continue
            if step in snaps:
                snapshots[e][step] = pts[e].numpy()
            signal = diversity_signal(pts[e], data[e]["spread"]) if torch.isfinite(pts[e]).all() \
                else math.nan
            if step < cfg.collapse_warmup:
                continue  # a fresh G is a small blob: low diversity then is not collapse
            det = detectors[e]
            collapsed = det.update(step, signal)
            if det.improved and cfg.early_stop_on_collapse:
                best[e] = member_tensors(trainer.sampler(), e)
            if collapsed and det.streak == cfg.collapse_patience and log is not None:
                log(f"toy {variant_name} {members[e].dataset} seed {members[e].seed}: collapse "
                    f"warning at G step {step} (diversity {signal:.3f} < {cfg.collapse_threshold} "
                    f"for {cfg.collapse_patience} checks)")
            if collapsed and cfg.early_stop_on_collapse:
                stopped[e], stop_step[e] = True, step
        if all(stopped):
            break
    seconds = time.perf_counter() - t0
    sampler = trainer.sampler()
    for e in range(E):
        if stopped[e] and best[e] is not None:
            load_member_tensors(sampler, e, best[e])
    samples = generate(trainer, z_eval, scales)
    kept = generate(trainer, z_check, scales)
    out = []
    for e, m in enumerate(members):
        det = detectors[e]
        if stopped[e] and det.best_step is not None:
            snapshots[e][det.best_step] = kept[e].numpy()  # the kept G's panel, at its step
        pts = samples[e].numpy()
        out.append({
            **score_modes(pts, data[e]["centers"], data[e]["std"], N_SIGMA),
            "member": m, "centers": data[e]["centers"], "std": data[e]["std"],
            "g_steps": stop_step[e] if stopped[e] else state.g_step,
            "collapse_warnings": det.warnings,
            "min_diversity": det.min_signal if det.history else math.nan,
            "best_step": det.best_step,
            "stopped_early": stopped[e], "seconds": seconds, "snapshots": snapshots[e],
            "samples": pts, "diversity": list(det.history),
        })
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0
    return float(a.mean()), se


def save_samples(path: Path, samples: np.ndarray, centers: np.ndarray, std: float) -> None:
    """An .npz `np.load` reads, byte-identical for identical arrays: np.savez stamps each
    member with the current time, which would make DVC see a changed output every run."""
    import io
    import zipfile

    arrays = {"samples": samples, "centers": np.asarray(centers, dtype=np.float64),
              "std": np.float64(std), "n_sigma": np.float64(N_SIGMA)}
    with atomic_path(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


def write_dataset(dataset: str, variant_name: str, runs: list[dict], out_dir: Path) -> dict:
    """One (variant, dataset) cell over seeds: seed<k>.npz, scores.json and progress.png
    under out_dir/<dataset>/; returns the flat aggregate (mean, s.e. and the half-width of
    the 95% Student-t interval over seeds)."""
    target = Path(out_dir) / dataset
    agg: dict[str, float | int] = {"n_seeds": len(runs), "n_modes": runs[0]["n_modes"]}
    for short, key in (("modes", "modes_covered"), ("hq", "high_quality_frac"), ("kl", "kl_uniform")):
        agg[f"{short}_mean"], agg[f"{short}_se"] = mean_se([r[key] for r in runs])
        half = mean_ci([r[key] for r in runs])["half_width"]
        if half is not None:  # one seed has no interval (and DVC metrics files hold no nulls)
            agg[f"{short}_ci95"] = half
    agg["collapse_warnings"] = sum(r["collapse_warnings"] for r in runs)
    agg["stopped_early"] = sum(int(r["stopped_early"]) for r in runs)
    mins = [r["min_diversity"] for r in runs if math.isfinite(r["min_diversity"])]
    # no finite check (a run shorter than collapse_warmup, or diverged): NaN, which the JSON
    # writer stores as null and lists under `nonfinite` (never a number that looks like a score)
    agg["min_diversity"] = min(mins) if mins else math.nan
    per_seed = []
    for r in runs:
        k = r["member"].seed
        save_samples(target / f"seed{k}.npz", r["samples"], r["centers"], r["std"])
        per_seed.append({
            "seed": k, "samples": f"seed{k}.npz", "modes_covered": r["modes_covered"],
            "high_quality_frac": r["high_quality_frac"], "kl_uniform": r["kl_uniform"],
            "g_steps": r["g_steps"], "collapse_warnings": r["collapse_warnings"],
            "min_diversity": r["min_diversity"], "best_step": r["best_step"],
            "stopped_early": r["stopped_early"],
        })
    write_json(target / "scores.json", {
        "variant": variant_name, "dataset": dataset, "n_eval": len(runs[0]["samples"]),
        "centers": np.asarray(runs[0]["centers"]).tolist(), "std": runs[0]["std"],
        "n_sigma": N_SIGMA, "summary": agg, "seeds": per_seed,
    })
    plot_points(runs[0]["snapshots"], runs[0]["centers"], target / "progress.png")
    return agg


def _train_share(args: tuple) -> list[dict]:
    variant_name, settings, cfg = args
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    return train_variant(variant_name, settings, cfg)


_FORK_SAFE = False  # True only inside forked_workers()


@contextlib.contextmanager
def forked_workers():
    """Inside this block, toy workers may be forked: the caller declares that its process
    set one torch thread before any torch work, so no OpenMP thread pool exists to be left
    behind. `ganlab toy` wraps its run in it; the flag is reset on the way out, so a process
    that runs the command in-process (tests) does not keep forking afterwards."""
    global _FORK_SAFE
    _FORK_SAFE = True
    try:
        yield
    finally:
        _FORK_SAFE = False


def _worker_context():
    """Forked workers on Linux inside `forked_workers()`, spawned ones
    otherwise. A fork inherits the imported torch and ganlab (a spawned worker spends ~1.5 s
    importing them again, measured per toy stage) and is safe while no thread pool exists to
    be left behind in the child; the workers run one thread each. Anywhere else (a notebook
    that has trained, macOS) spawn keeps the workers clean."""
    import multiprocessing
    import sys

    if sys.platform == "linux" and _FORK_SAFE and torch.get_num_threads() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def train_in_workers(variant_name: str, settings: Mapping[str, Any], cfg: ToySuiteParams,
                     log: Callable[[str], None] | None = None) -> list[dict]:
    """`train_variant`, with the datasets split over `cfg.workers` processes (see
    `_worker_context` for how they start). Members keep `members_of` order.
    Collapse warnings are recorded in each member's numbers; only the in-process path can
    print them as they happen."""
    import dataclasses

    n = min(cfg.workers, len(cfg.datasets))
    if n <= 1:
        return train_variant(variant_name, settings, cfg, log=log)
    from concurrent.futures import ProcessPoolExecutor

    shares = [tuple(cfg.datasets[i::n]) for i in range(n)]
    tasks = [(variant_name, dict(settings), dataclasses.replace(cfg, datasets=share)) for share in shares]
    with ProcessPoolExecutor(n, mp_context=_worker_context()) as pool:
        results = list(pool.map(_train_share, tasks))
    by_member = {r["member"]: r for runs in results for r in runs}
    return [by_member[m] for m in members_of(cfg)]


def run_toy_variant(variant_name: str, variant: TrainParams | Mapping[str, Any],
                    cfg: ToySuiteParams, out_dir: Path,
                    log: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Train and score `variant` on every dataset x seed; write out_dir/<dataset>/...;
    {dataset: aggregate metrics}. `variant` is a main variant's settings (merged with
    `training:`), recast here by `toy_variant_settings`."""
    import dataclasses

    raw = dataclasses.asdict(variant) if isinstance(variant, TrainParams) else dict(variant)
    settings = toy_variant_settings(raw, cfg, variant_name)
    if settings is None:
        raise GanlabError(f"toy suite: variant {variant_name} is a dcgan variant; it has no toy run")
    runs = train_in_workers(variant_name, settings, cfg, log)
    for r in runs:
        if log is not None:
            m = r["member"]
            log(f"toy {variant_name} {m.dataset} seed {m.seed}: {r['modes_covered']}/{r['n_modes']} "
                f"modes, {100 * r['high_quality_frac']:.1f}% HQ, KL {r['kl_uniform']:.3f}, "
                f"min diversity {r['min_diversity']:.2f}")
    return {ds: write_dataset(ds, variant_name, [r for r in runs if r["member"].dataset == ds], out_dir)
            for ds in cfg.datasets}
