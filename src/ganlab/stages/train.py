"""Stage `train`: train one variant (every training seed) and write its outputs whole.

Outputs of the first seed: models/variants/<V>/ (generator.pt, progress grids, monitor
snapshots, mlflow_run.json, timing.json), metrics/curves/<V>.csv (plots),
metrics/train/<V>.json (metrics). Every other seed writes all of its outputs under
models/variants/<V>/seeds/<s>/. The kind's trainer comes from ganlab.kinds.training.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from ganlab.config.params import Params, TrainParams
from ganlab.config.parse import flatten
from ganlab.core.latent import grid_noise
from ganlab.kinds.base import Trainer, TrainState, timed_epoch
from ganlab.kinds.training import build_trainer, kind_of
from ganlab.runtime.checkpoint import (
    CHECKPOINT_EVERY_SECONDS,
    CHECKPOINTS_DIR,
    code_digest,
    config_hash,
    load_checkpoint,
    save_checkpoint,
)
from ganlab.runtime.distributed import DistContext
from ganlab.runtime.paths import PREPARED_DIR, VARIANTS_DIR
from ganlab.tracking import runs as _tracking
from ganlab.util import GanlabError, atomic_path, save_torch


def _write_curves(path: Path, rows: list[dict[str, float]]) -> None:
    cols = list(rows[0]) if rows else ["step"]
    lines = [",".join(cols)]
    lines += [",".join(f"{r.get(c, float('nan')):.6g}" for c in cols) for r in rows]
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")




@torch.no_grad()
def _eval_grid(trainer: Trainer, z: Tensor, final: bool = False) -> Tensor:
    """The progress grid: from a preview of the averaged generator's batch statistics
    (Trainer.sampler) except after the last epoch, where it shows the generator as exported."""
    sampler = trainer.sampler(preview=not final)
    was_training = sampler.training
    sampler.eval()
    grid = trainer.progress_images(z).cpu()
    sampler.train(was_training)
    return grid


def run_train_all(params: Params, variant: str, echo=print) -> list[dict]:
    """Train every seed of `seeds`, one after another, in this process. Under torchrun the
    process group is set up once for all of them (re-creating it per seed in one process is
    known to hang: pytorch issues 114585, 55967)."""
    from ganlab.runtime import distributed
    from ganlab.util import resolve_device

    dist = distributed.init(resolve_device(params.device))
    try:
        return [run_train(params, variant, echo=echo, seed=seed, dist=dist) for seed in params.seeds]
    finally:
        dist.shutdown()


@_tracking.fail_run_on_error  # a raising training ends its MLflow run FAILED (KILLED on Ctrl-C)
def run_train(params: Params, variant: str, data_dir: Path = PREPARED_DIR,
              echo=print, seed: int | None = None, dist: DistContext | None = None) -> dict:
    """Train one variant with training seed `seed` (default: the first of `seeds`); resume
    from its checkpoint when one for this exact config exists."""
    from ganlab.data.images import load_meta
    from ganlab.runtime import distributed
    from ganlab.util import resolve_device

    p = params.variant(variant)
    seed = params.training_seed(seed)  # a seed outside `seeds` is refused before any work
    data_seed = params.seed
    # the training seed draws everything the kinds draw (init, batches, noise):
    # derive_seed(seed, ...); the progress grid's noise and the monitor's fixed draws stay the
    # data seed's, so every seed's grids and quality checks share their inputs
    params = dataclasses.replace(params, seed=seed)
    base_device = resolve_device(params.device)
    meta = load_meta(data_dir)
    own = dist is None
    dist = distributed.init(base_device) if own else dist
    try:
        return _run_train(params, variant, data_dir, echo, p, base_device, meta, dist, data_seed)
    finally:
        if own:
            dist.shutdown()


def _publish(work: Path, out: Path) -> None:
    """Move each output from the work folder into the DVC output folder, each entry whole:
    a killed or failed training never leaves the output folder half-overwritten."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for entry in sorted(work.iterdir()):
        dest = out / entry.name
        if dest.is_dir():
            old = out / f".{entry.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
            entry.rename(dest)
            shutil.rmtree(old)
        else:
            entry.replace(dest)
    work.rmdir()


def _check_finite(variant: str, rows: list[dict[str, float]]) -> None:
    for r in rows:
        bad = [k for k in ("d_loss", "g_loss") if k in r and not math.isfinite(r[k])]
        if bad:
            raise GanlabError(f"train {variant}: {bad[0]} is {r[bad[0]]} at G step {int(r['step'])} "
                              "(diverged: lower the lr or add a penalty); run marked FAILED")


def _make_monitor(params: Params, variant: str, data_dir: Path, device: torch.device,
                  trainer: Trainer, state: TrainState, work: Path, data_seed: int):
    """The snapshot monitor of this training, continued from a resumed state; None if off."""
    if params.monitor.every == 0:
        return None
    from ganlab.runtime.monitor import SnapshotMonitor, count_step_flops

    flops_g, flops_d = count_step_flops(lambda: build_trainer(params, variant, data_dir, device),
                                        TrainState())
    mon = SnapshotMonitor(params.monitor.every, params.monitor.collapse_threshold,
                          params.monitor.collapse_patience, params.monitor.early_stop_on_collapse,
                          flops_g, flops_d, trainer.p.n_critic, work)
    if params.monitor.early_stop_on_collapse:
        from ganlab.data.images import load_split, to_unit_range

        real = to_unit_range(load_split(data_dir / "train.npz").images)
        mon.setup_diversity(trainer, real, data_seed, variant)
    mon.load(state.monitor)
    return mon


def _run_train(params: Params, variant: str, data_dir: Path, echo, p: TrainParams,
               base_device: torch.device, meta: dict, dist: DistContext, data_seed: int) -> dict:
    """run_train's body on one rank. Under torchrun every rank trains its shard; rank 0
    alone reads the checkpoint (and hands it to the others), logs to MLflow and writes
    progress, checkpoints and outputs; the others wait at the closing barrier."""
    from tqdm import tqdm

    from ganlab.core.images import save_png
    from ganlab.tracking import runs as tracking
    from ganlab.util import write_json

    if p.batch_size % dist.world_size:
        raise GanlabError(f"variants.{variant}.batch_size: {p.batch_size} does not split evenly across "
                          f"the {dist.world_size} torchrun processes (it is the global batch)")
    main = dist.is_main
    if not main:
        echo = _silent
    device = dist.device(base_device)
    trainer = build_trainer(params, variant, data_dir, device, dist)
    total_g = trainer.total_d_steps // p.n_critic
    if p.log_every > total_g:  # else the curves CSV and MLflow get a header and no row
        raise GanlabError(f"variants.{variant}.log_every: {p.log_every} is more than the {total_g} "
                          f"G steps of this training ({p.epochs} epochs of {trainer.steps_per_epoch} "
                          f"steps, n_critic {p.n_critic}), so nothing would be logged; use at most "
                          f"{total_g}")
    if main:
        tracking.client()  # a store that cannot be opened (corrupt, copied, down) fails before work
    # a kind that reads more data than data/prepared (cycle: the UCI digits) names its hash
    data_sha = meta["train_sha256"] + getattr(trainer, "extra_data_sha", "")
    cfg = config_hash(p, params.seed, data_sha, base_device, code_digest(), dist.world_size)
    ckpt_path = CHECKPOINTS_DIR / variant / f"{cfg}.pt"
    # outputs grow here while training runs, and move into the DVC output folder at the end
    work = CHECKPOINTS_DIR / variant / f"{cfg}-out"
    ckpt = dist.broadcast(load_checkpoint(ckpt_path, cfg) if main else None)
    if ckpt is not None:
        state = trainer.load_state_dict(ckpt)
        echo(f"train {variant}: resuming from {ckpt_path} after epoch {state.epoch}/{p.epochs}")
    else:
        state = TrainState()
        if main:
            import shutil

            shutil.rmtree(work, ignore_errors=True)  # a torn earlier attempt of this config
    if not main:
        stops = params.monitor.every > 0 and params.monitor.early_stop_on_collapse and dist.active
        return _follow(trainer, state, p, stops, dist)
    quiet_bar = not sys.stdout.isatty()  # tqdm draws no bar then: say what runs instead
    if quiet_bar:
        echo(f"train {variant}: {p.epochs - state.epoch} of {p.epochs} epochs to run, "
             f"{trainer.steps_per_epoch} steps each ({total_g} G steps in all), seed {params.seed}, "
             f"on {device}")
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
        # rows the checkpoint holds that were still waiting for their flush when it was killed
        tracking.log_metrics(state.run_id, [r for r in state.rows if r["step"] > logged_upto])
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
    # CPU, memory (and GPU) use as system/* metrics until the run ends (set_terminated)
    tracking.start_system_metrics(state.run_id)
    sub = params.seed_dir(params.seed)
    first_seed = sub == Path()
    out_dir = VARIANTS_DIR / variant / sub
    progress_dir = work / "progress"
    progress_dir.mkdir(parents=True, exist_ok=True)
    fixed_z = grid_noise(dataclasses.replace(params, seed=data_seed), variant, 64, p.latent_dim).to(device)
    monitor = _make_monitor(params, variant, data_dir, device, trainer, state, work, data_seed)
    bar = tqdm(total=p.epochs, initial=state.epoch, desc=f"train {variant}", unit="epoch",
               disable=None)
    last_ckpt = time.monotonic()
    if state.epoch == 0:  # MLflow's image view opens at step 0: the untrained generator goes there
        tracking.log_image(state.run_id, _eval_grid(trainer, fixed_z), "progress", step=0)
    first_epoch = True
    loop_start, train_before, monitor_s = time.perf_counter(), state.train_seconds, 0.0
    # MLflow rows and progress grids every monitor.progress_every epochs and at the end: each
    # flush costs ~75 ms (grid, PNG, MLflow image and metrics), 10% of an MLP epoch (issue 25)
    every = params.monitor.progress_every
    pending: list[dict[str, float]] = []  # rows not yet in MLflow

    def flush_rows() -> None:
        nonlocal pending
        tracking.log_metrics(state.run_id, [r for r in pending if r["step"] > logged_upto])
        pending = []

    def flush(final: bool) -> None:
        flush_rows()
        grid = _eval_grid(trainer, fixed_z, final=final)
        with atomic_path(progress_dir / f"epoch_{state.epoch:03d}.png", suffix=".png") as tmp:
            save_png(grid, tmp, nrow=8)
        tracking.log_image(state.run_id, grid, "progress", step=state.epoch)  # UI steps through it

    try:
        while state.epoch < p.epochs:
            seconds_before = state.train_seconds
            rows = timed_epoch(trainer, state)
            pending.extend(rows)  # a diverged epoch's finite values reach MLflow too (below)
            _check_finite(variant, rows)
            if quiet_bar and first_epoch and state.epoch < p.epochs:
                took = state.train_seconds - seconds_before
                echo(f"train {variant}: epoch {state.epoch}/{p.epochs} took {took:.1f} s; the other "
                     f"{p.epochs - state.epoch} should take about "
                     f"{_duration(took * (p.epochs - state.epoch))}")
            first_epoch = False
            state.rows.extend(rows)
            stop = False
            if monitor is not None and monitor.due(state.epoch, state.epoch == p.epochs):
                t_check = time.perf_counter()
                monitor.check(trainer, state.g_step, state.epoch, state.d_step)
                monitor_s += time.perf_counter() - t_check
                state.quality_seconds.append([float(state.g_step), round(state.train_seconds, 3)])
                state.monitor = monitor.state()
                stop = monitor.should_stop
                if monitor.early_stop and dist.active:
                    dist.broadcast(stop)  # the other ranks stop at the same epoch (see _follow)
            if stop:
                state.stopped_early = True
                if monitor.best_state is not None:
                    trainer.sampler().load_state_dict(monitor.best_state)
                echo(f"train {variant}: collapse warning at G step {state.g_step}; stopped early, "
                     f"keeping the most diverse generator (G step {monitor.detector.best_step})")
                flush(final=True)  # the last grid shows the generator kept
                break
            if state.epoch % every == 0 or state.epoch == p.epochs:
                flush(final=state.epoch == p.epochs)
            if time.monotonic() - last_ckpt >= CHECKPOINT_EVERY_SECONDS and state.epoch < p.epochs:
                save_checkpoint(ckpt_path, trainer.state_dict(state, cfg))
                last_ckpt = time.monotonic()
            if rows:
                bar.set_postfix(d_loss=f"{rows[-1]['d_loss']:.3f}", g_loss=f"{rows[-1]['g_loss']:.3f}")
            bar.update(1)
    except BaseException:
        # a failed or interrupted run keeps its curves in MLflow up to the end (the CSV is only
        # written by a finished run): the rows still waiting for their flush go now
        try:
            flush_rows()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise
    bar.close()
    # this process's epoch loop: the trainer's epochs, the monitor's checks and the rest
    # (grids, MLflow, checkpoints): bench/run.py --only whole reads the split
    loop = {"loop_seconds": round(time.perf_counter() - loop_start, 3),
            "loop_train_seconds": round(state.train_seconds - train_before, 3),
            "loop_monitor_seconds": round(monitor_s, 3)}

    # Final outputs: into the work folder, then moved whole into the output folder.
    save_torch({**trainer.export(), "config_hash": cfg}, work / "generator.pt")
    for name, blob in trainer.side_outputs().items():
        if name.endswith(".json"):
            write_json(work / name, blob)
        else:
            save_torch(blob, work / name)
    tracking.write_run_file(work / "mlflow_run.json", state.run_id)
    # wall-clock seconds are not reproducible, so they stay out of DVC's metrics/plots files
    write_json(work / "timing.json", {"train_seconds": round(state.train_seconds, 2),
                                      "device": str(device),
                                      **({"world_size": dist.world_size} if dist.active else {}),
                                      "quality_seconds": state.quality_seconds, **loop})
    last = state.rows[-1] if state.rows else {}
    summary = {"g_steps": state.g_step, "d_steps": state.d_step,
               "stopped_early": state.stopped_early}
    if monitor is not None:
        summary["snapshots"] = len(monitor.rows)
        if monitor.early_stop:
            d = monitor.detector
            summary.update(collapse_warnings_pixels=d.warnings, min_diversity_pixels=d.min_signal,
                           best_diversity_step=d.best_step)
    summary.update({f"final_{k}": round(v, 6) for k, v in last.items()
                    if k not in ("step", "epoch")})
    if not first_seed:  # another seed keeps its curves and summary beside its model
        _write_curves(work / "curves.csv", state.rows)
        write_json(work / "train.json", summary)
    tracking.log_metrics(state.run_id, [{"step": state.g_step, "train_seconds": state.train_seconds}])
    # -- MLflow: the generator(s) as registered models, then the run ends with the stage --
    # (a replica seed is not registered: `models:/ganlab-<V>` stays the first seed's model;
    # its weights are in models/variants/<V>/seeds/<s>/)
    if first_seed:
        logged = kind_of(params, variant).log_models(state.run_id, trainer, variant,
                                                     {"variant": variant, "config_hash": cfg})
        tracking.log_metrics(state.run_id, [{"step": state.g_step, "model_log_seconds":
                                             sum(m["seconds"] for m in logged)}])
    _publish(work, out_dir)
    if first_seed:  # the variant's DVC plots and metrics
        _write_curves(Path("metrics/curves") / f"{variant}.csv", state.rows)
        write_json(Path("metrics/train") / f"{variant}.json", summary)
    tracking.set_terminated(state.run_id)
    ckpt_path.unlink(missing_ok=True)  # resume state is only needed while unfinished
    label = variant if first_seed else f"{variant} seed {params.seed}"
    echo(f"train {label}: {state.g_step} G steps in {state.train_seconds:.1f}s, "
         f"MLflow run {state.run_id}")
    dist.barrier()  # the other ranks end only once the outputs are written
    return summary


def _silent(*_args, **_kwargs) -> None:
    pass


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _follow(trainer: Trainer, state: TrainState, p: TrainParams, stops: bool,
            dist: DistContext) -> dict:
    """A rank other than 0: the same epochs in lockstep, no outputs. With early stop on,
    rank 0 broadcasts after each monitor check whether the run stopped."""
    every = trainer.params.monitor.every
    while state.epoch < p.epochs:
        timed_epoch(trainer, state)
        due = every > 0 and (state.epoch % every == 0 or state.epoch == p.epochs)
        if stops and due and dist.broadcast(None):
            break
    dist.barrier()
    return {}
