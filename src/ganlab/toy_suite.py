"""The mode-coverage suite: each loss variant trained on 2-D mixtures with known modes.

Protocol of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018): train a small
MLP GAN on ring8 / grid25, draw `n_eval` points from the final generator and count covered
modes, the share of high-quality points and the KL of the mode histogram from uniform
(`ganlab.metrics.modes.score_modes`). Several seeds per cell give a mean and its standard
error, because single toy runs are notoriously seed-dependent.

The variants are the lab's own: a run keeps a variant's loss, penalties, optimiser and
n_critic and swaps in the toy nets and the suite's budget (`toy_variant_settings`), then
goes through the same `GanTrainer.run_epoch` as the image runs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.collapse import CollapseDetector, diversity_signal, mean_pairwise_distance
from ganlab.data.toy import TOY_DATASETS, toy_dataset
from ganlab.metrics.modes import plot_points, score_modes
from ganlab.params import ParamsError, TrainParams, parse_params
from ganlab.train import GanTrainer, TrainState
from ganlab.util import GanlabError, derive_seed, write_json

# Large enough that run_epoch never logs: the suite reads nothing from its rows, and each
# log costs a host sync plus a power iteration over D's layers.
NO_LOGGING = 1_000_000


@dataclass(frozen=True)
class ToySuiteParams:
    """Settings of the suite (`toy:` in params.yaml)."""

    datasets: tuple[str, ...] = ("ring8", "grid25")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1000  # D steps per training (G steps = steps / n_critic): what the 90 s budget allows
    batch_size: int = 256
    latent_dim: int = 2
    width: int = 64  # hidden units of each of the 3 layers in G and in D
    n_train: int = 25600  # training points drawn once per seed (>= check_every x batch_size)
    n_eval: int = 2500  # generated points scored at the end
    n_snapshots: int = 4  # panels in the PNG (first seed), evenly spaced in steps
    lr_scale: float = 2.5  # multiplies each variant's lr and d_lr: the image-tuned rates are slow here
    standardize: bool = True  # train on data / its std; samples are scaled back before scoring
    check_every: int = 100  # D steps between diversity checks
    n_check: int = 512  # fixed-noise points per check (and per PNG panel)
    collapse_threshold: float = 0.25  # diversity below this counts as collapsed
    collapse_patience: int = 3  # consecutive collapsed checks before a warning
    collapse_warmup: int = 500  # D steps before checks count (a fresh G is a point blob)
    early_stop_on_collapse: bool = False  # stop at the warning, keep the most diverse G
    workers: int = 1  # processes for run_suite (1 = in this process)

    def check(self, key: str = "toy") -> None:
        if not self.datasets:
            raise ParamsError(f"{key}.datasets: must list at least one of {', '.join(TOY_DATASETS)}")
        for name in self.datasets:
            if name not in TOY_DATASETS:
                raise ParamsError(
                    f"{key}.datasets: {name!r} is not one of {', '.join(sorted(TOY_DATASETS))}"
                )
        if not self.seeds:
            raise ParamsError(f"{key}.seeds: must list at least one seed")
        for name in ("steps", "batch_size", "latent_dim", "width", "n_eval", "n_snapshots",
                     "check_every", "collapse_patience", "workers"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{key}.{name}: {getattr(self, name)!r} must be >= 1")
        if self.n_check < 2:
            raise ParamsError(f"{key}.n_check: {self.n_check!r} must be >= 2")
        if self.collapse_warmup < 0:
            raise ParamsError(f"{key}.collapse_warmup: {self.collapse_warmup!r} must be >= 0")
        if not self.lr_scale > 0:
            raise ParamsError(f"{key}.lr_scale: {self.lr_scale!r} must be > 0")
        # One chunk between checks is drawn without replacement from the training points.
        if self.n_train < self.check_every * self.batch_size:
            raise ParamsError(
                f"{key}.n_train: {self.n_train} points cannot fill check_every x batch_size = "
                f"{self.check_every * self.batch_size}; raise n_train or lower check_every"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, key: str = "toy") -> ToySuiteParams:
        """Build from the `toy:` mapping of params.yaml; missing keys keep the defaults."""
        raw = dict(raw or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise ParamsError(f"{key}.{unknown[0]}: unknown key; allowed: {', '.join(names)}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            v = raw[f.name]
            default = getattr(cls, f.name)
            if isinstance(default, tuple):
                if not isinstance(v, list | tuple):
                    raise ParamsError(f"{key}.{f.name}: {v!r} must be a list")
                v = tuple(v)
            elif isinstance(default, bool):
                if not isinstance(v, bool):
                    raise ParamsError(f"{key}.{f.name}: {v!r} must be true or false")
            elif isinstance(default, int):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ParamsError(f"{key}.{f.name}: {v!r} must be an integer")
            elif isinstance(default, float):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ParamsError(f"{key}.{f.name}: {v!r} must be a number")
                v = float(v)
            values[f.name] = v
        out = cls(**values)
        out.check(key)
        return out


def toy_variant_settings(variant_dict: Mapping[str, Any], toy: ToySuiteParams) -> dict | None:
    """A main variant's settings recast for the toy suite, or None to skip it.

    Kept from the variant: loss, ls_targets, clip, gp, r1, spectral_norm, instance_noise,
    optimizer, lr / d_lr / betas (times `toy.lr_scale`), n_critic, ema.
    Replaced: arch -> toy; width, latent_dim, batch_size from `toy`; epochs (the suite
    counts D steps itself); log_every (off); d_norm -> none (the toy D has no
    normalisation, and saying so lets the trainer run real and fake through D in one pass).

    Variants with `arch: dcgan` are skipped (None): their settings (width in channels,
    epochs) are tuned for conv nets on images, and their loss is already covered by the
    MLP variant with the same loss.
    """
    settings = copy.deepcopy(dict(variant_dict))
    if settings.get("arch") == "dcgan":
        return None
    for key in ("lr", "d_lr"):
        if key in settings or toy.lr_scale != 1.0:
            base = settings.get(key, getattr(TrainParams, key))
            settings[key] = float(base) * toy.lr_scale
    settings.update(
        arch="toy",
        width=toy.width,
        latent_dim=toy.latent_dim,
        batch_size=toy.batch_size,
        epochs=max(1, math.ceil(toy.steps / toy.check_every)),
        log_every=NO_LOGGING,
        d_norm="none",
    )
    return settings


def _as_settings(variant: TrainParams | Mapping[str, Any]) -> dict:
    if isinstance(variant, TrainParams):
        return dataclasses.asdict(variant)
    return dict(variant)


@torch.no_grad()
def _generate(trainer: GanTrainer, z: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Points from the sampler, mapped back to the data's units (times `scale`)."""
    g = trainer.sampler()
    was_training = g.training
    g.eval()
    out = g(z.to(trainer.device)).detach().cpu() * scale
    g.train(was_training)
    return out


def snapshot_steps(steps: int, n: int, check_every: int) -> list[int]:
    """`n` steps spread evenly over (0, steps], each on a check boundary (or the last step)."""
    out = set()
    for k in range(1, n + 1):
        s = math.ceil(steps * k / n / check_every) * check_every
        out.add(min(s, steps))
    return sorted(out)


def train_one(dataset: str, variant_name: str, settings: Mapping[str, Any], seed: int,
              cfg: ToySuiteParams, log: Callable[[str], None] | None = None) -> dict:
    """One training of one variant on one dataset and seed; the scores and diagnostics.

    Returns a dict with the `score_modes` numbers, `d_steps` trained, `collapse_warnings`,
    `min_diversity`, `best_step`, `stopped_early`, `seconds`, the `snapshots`
    ({step: points}), the scored `samples` and the per-check `diversity` history
    [(step, signal)]. With `early_stop_on_collapse`, a run that collapses stops at the
    warning and is scored (and snapshotted once more) with its most diverse generator.
    """
    cfg.check()
    raw = {"seed": int(seed), "device": "cpu", "variants": {variant_name: dict(settings)}}
    params = parse_params(raw)
    p = params.variant(variant_name)
    if p.arch != "toy":
        raise GanlabError(f"toy suite: variant {variant_name} has arch {p.arch!r}, expected toy")
    real, centers, std = toy_dataset(dataset, cfg.n_train, seed)
    # Train in standardised units (one scale for both axes, so the geometry is kept), so
    # the grid (+-4) and the ring (radius 1) reach the nets at the same scale and one
    # lr_scale serves both. Everything scored, checked or plotted is in the data's units.
    # (Measured effect at the default budget: small either way; kept for consistency.)
    scale = float(real.std()) if cfg.standardize else 1.0
    trainer = GanTrainer(params, variant_name, real / scale, torch.device("cpu"))
    # The suite counts D steps, not passes over the data: each run_epoch is one chunk of
    # `check_every` batches drawn without replacement from a fresh permutation of the
    # training points, and instance-noise annealing runs over the whole `steps`.
    trainer.total_d_steps = cfg.steps

    noise = torch.Generator().manual_seed(derive_seed(seed, variant_name, dataset, "toy-noise"))
    z_check = torch.randn(cfg.n_check, p.latent_dim, generator=noise)
    z_eval = torch.randn(cfg.n_eval, p.latent_dim, generator=noise)
    # The real-data spread is computed once, on up to 2,000 training points.
    real_spread = mean_pairwise_distance(real[: min(len(real), 2000)])

    detector = CollapseDetector(cfg.collapse_threshold, cfg.collapse_patience, mode="max")
    best_state: dict | None = None
    snaps = set(snapshot_steps(cfg.steps, cfg.n_snapshots, cfg.check_every))
    snapshots: dict[int, np.ndarray] = {}
    state = TrainState()
    stopped_early = False
    t0 = time.perf_counter()
    while state.d_step < cfg.steps:
        trainer.steps_per_epoch = min(cfg.check_every, cfg.steps - state.d_step)
        trainer.run_epoch(state)
        step = state.d_step
        pts = _generate(trainer, z_check, scale)
        if step in snaps:
            snapshots[step] = pts.numpy()
        if not torch.isfinite(pts).all():
            signal = math.nan
        else:
            signal = diversity_signal(pts, real_spread)
        if step < cfg.collapse_warmup:
            continue  # a fresh G is a small blob: low diversity then is not collapse
        collapsed = detector.update(step, signal)
        if detector.improved:
            best_state = copy.deepcopy(trainer.sampler().state_dict())
        if collapsed and detector.streak == cfg.collapse_patience and log is not None:
            log(f"toy {dataset}/{variant_name} seed {seed}: collapse warning at step {step} "
                f"(diversity {signal:.3f} < {cfg.collapse_threshold} for {cfg.collapse_patience} checks)")
        if collapsed and cfg.early_stop_on_collapse:
            stopped_early = True
            break
    seconds = time.perf_counter() - t0
    if stopped_early and best_state is not None:
        trainer.sampler().load_state_dict(best_state)
    samples = _generate(trainer, z_eval, scale)
    if stopped_early and detector.best_step is not None:
        # the kept generator gets its own panel, at the step it comes from
        snapshots[detector.best_step] = _generate(trainer, z_check, scale).numpy()
    scores = score_modes(samples, centers, std)
    min_div = detector.min_signal if detector.history else math.nan
    return {
        **scores,
        "d_steps": state.d_step,
        "collapse_warnings": detector.warnings,
        "min_diversity": min_div,
        "best_step": detector.best_step if detector.best_step is not None else -1,
        "stopped_early": stopped_early,
        "seconds": seconds,
        "snapshots": snapshots,
        "samples": samples.numpy(),
        "diversity": list(detector.history),
    }


def _mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0
    return float(a.mean()), se


def _finite(x: float) -> float:
    # JSON has no NaN; -1 marks "never checked" (a run shorter than collapse_warmup).
    return float(x) if math.isfinite(x) else -1.0


def run_toy(dataset: str, variant_name: str, variant: TrainParams | Mapping[str, Any],
            seeds: list[int], cfg: ToySuiteParams, out_dir: Path,
            log: Callable[[str], None] | None = None) -> dict:
    """Train `variant` on `dataset` once per seed; write and return the metrics.

    `variant` is a main variant's settings (mapping or TrainParams); it is passed through
    `toy_variant_settings` here, so callers need not do it. Writes
    `out_dir/<dataset>/<variant>.json` (flat numbers: mean and standard error over seeds,
    and per-seed values) and `out_dir/<dataset>/<variant>.png` (the first seed's
    fixed-noise points at each snapshot step).
    """
    if not seeds:
        raise GanlabError("toy suite: no seeds given")
    settings = _toy_settings_or_fail(variant_name, variant, cfg)
    runs = []
    for seed in seeds:
        r = train_one(dataset, variant_name, settings, seed, cfg, log=log)
        _log_run(log, dataset, variant_name, seed, r)
        runs.append(r)
    return write_cell(dataset, variant_name, list(seeds), runs, out_dir)


def _toy_settings_or_fail(variant_name: str, variant: TrainParams | Mapping[str, Any],
                          cfg: ToySuiteParams) -> dict:
    settings = toy_variant_settings(_as_settings(variant), cfg)
    if settings is None:
        raise GanlabError(f"toy suite: variant {variant_name} is a dcgan variant; it has no toy run")
    return settings


def _log_run(log: Callable[[str], None] | None, dataset: str, variant_name: str, seed: int,
             r: dict) -> None:
    if log is not None:
        log(f"toy {dataset}/{variant_name} seed {seed}: {r['modes_covered']}/{r['n_modes']} modes, "
            f"{100 * r['high_quality_frac']:.1f}% HQ, KL {r['kl_uniform']:.3f}, "
            f"min diversity {r['min_diversity']:.2f}, {r['seconds']:.1f} s")


def write_cell(dataset: str, variant_name: str, seeds: list[int], runs: list[dict],
               out_dir: Path) -> dict:
    """Aggregate one (dataset, variant) cell over seeds; write its JSON and PNG."""
    metrics: dict[str, float | int] = {"n_seeds": len(runs), "n_modes": runs[0]["n_modes"]}
    for short, key in (("modes", "modes_covered"), ("hq", "high_quality_frac"), ("kl", "kl_uniform")):
        mean, se = _mean_se([r[key] for r in runs])
        metrics[f"{short}_mean"], metrics[f"{short}_se"] = mean, se
    metrics["collapse_warnings"] = sum(r["collapse_warnings"] for r in runs)
    metrics["min_diversity"] = _finite(min((r["min_diversity"] for r in runs), key=_nan_last))
    for seed, r in zip(seeds, runs, strict=True):
        metrics[f"seed{seed}_modes"] = r["modes_covered"]
        metrics[f"seed{seed}_hq"] = r["high_quality_frac"]
        metrics[f"seed{seed}_kl"] = r["kl_uniform"]
        metrics[f"seed{seed}_d_steps"] = r["d_steps"]
        metrics[f"seed{seed}_collapse_warnings"] = r["collapse_warnings"]
        metrics[f"seed{seed}_min_diversity"] = _finite(r["min_diversity"])
        metrics[f"seed{seed}_stopped_early"] = int(r["stopped_early"])
    target = Path(out_dir) / dataset
    write_json(target / f"{variant_name}.json", metrics)
    _, centers, _ = toy_dataset(dataset, 1, seeds[0])
    plot_points(runs[0]["snapshots"], centers, target / f"{variant_name}.png")
    return metrics


def _nan_last(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def _worker_init() -> None:
    # Tiny nets gain nothing from intra-op threads, and a second OpenMP thread contending
    # for a busy core slowed a step ~50x in measurement: one thread per worker process.
    torch.set_num_threads(1)


def _train_task(task: tuple) -> dict:
    dataset, name, settings, seed, cfg = task
    return train_one(dataset, name, settings, seed, cfg)


def run_suite(cfg: ToySuiteParams, variants: Mapping[str, Mapping[str, Any]], out_dir: Path,
              training: Mapping[str, Any] | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, dict[str, dict]]:
    """Every dataset x every non-dcgan variant; {dataset: {variant: metrics}}.

    `variants` and `training` are the raw `variants:` / `training:` mappings of params.yaml;
    a variant lists only what differs from `training`, so they are merged first.
    With `cfg.workers` > 1 the trainings run in that many processes (one thread each);
    every training is seeded on its own, so the results do not depend on `workers`.
    """
    cfg.check()
    cells: list[tuple[str, str, dict]] = []
    for dataset in cfg.datasets:
        for name, spec in variants.items():
            merged = {**dict(training or {}), **dict(spec or {})}
            settings = toy_variant_settings(merged, cfg)
            if settings is not None:
                cells.append((dataset, name, settings))
    seeds = list(cfg.seeds)
    tasks = [(d, n, s, seed, cfg) for d, n, s in cells for seed in seeds]
    if cfg.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked child inherits the parent's OpenMP state
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_worker_init) as pool:
            results = list(pool.map(_train_task, tasks))
        for (dataset, name, _, seed, _), r in zip(tasks, results, strict=True):
            _log_run(log, dataset, name, seed, r)
    else:
        results = []
        for dataset, name, settings, seed, _ in tasks:
            results.append(train_one(dataset, name, settings, seed, cfg, log=log))
            _log_run(log, dataset, name, seed, results[-1])
    out: dict[str, dict[str, dict]] = {d: {} for d in cfg.datasets}
    for i, (dataset, name, _) in enumerate(cells):
        runs = results[i * len(seeds):(i + 1) * len(seeds)]
        out[dataset][name] = write_cell(dataset, name, seeds, runs, out_dir)
    return out
