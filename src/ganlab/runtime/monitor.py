"""The training side of the quality monitor: snapshots of the sampler, judged later.

Every `monitor.every` epochs (and at the last) the train stage saves the sampler's weights
(the EMA of G where there is one, batch-norm statistics refreshed) as a snapshot beside the
generator, with the G step, D steps and training FLOPs of that moment. The per-variant
`quality` stage scores those snapshots in the judge's feature space (ganlab.stages.quality),
so training never loads the judge and a change to how quality is scored retrains nothing.

Compute is counted two ways:
- training FLOPs: `torch.utils.flop_counter` over one G-step cycle of the variant (its
  n_critic D steps and the G step) on a separate, throwaway trainer, times the G steps.
  Deterministic and hardware-independent, so it goes into the snapshot index (and the DVC
  plots file the quality stage writes);
- wall-clock training seconds: timing.json, MLflow and the report only (they differ run to run).

Early stop on collapse (`monitor.early_stop_on_collapse`) needs a signal during training, and
training must not read the judge: it uses the same diversity ratio as the judge-space detector
(mean pairwise distance of generated over real), in pixel space, on a fixed draw of
`DIVERSITY_N` images, with the same threshold and patience. The run keeps the most diverse
snapshot's weights, and a checkpoint carries them so a resumed run keeps the same one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ganlab.core.collapse import CollapseDetector, mean_pairwise_distance
from ganlab.util import derive_seed, save_torch, write_json

SNAPSHOT_DIR = "snapshots"
INDEX_FILE = "index.json"
DIVERSITY_N = 256  # images per pixel-space diversity check (early stop only)


def _total_flop_counter():
    """torch's FlopCounterMode without its per-module tracker. The tracker's backward hooks
    make `autograd.grad` fail (the gradient penalty's and R1's double backward: "A leaf node
    was passed to _will_engine_execute_node", torch 2.14), and only the total is used here.
    The counting itself is torch's (its `flop_registry` per aten op)."""
    from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode

    class TotalFlopCounter(FlopCounterMode):
        def __enter__(self):
            self.flop_counts.clear()
            self.mode = _FlopCounterMode(self)
            self.mode.__enter__()
            return self

        def __exit__(self, *args):
            out = self.mode.__exit__(*args)
            self.mode = None
            return out

    return TotalFlopCounter(display=False)


def count_step_flops(make_trainer: Callable[[], object], state: object) -> tuple[float, float]:
    """(FLOPs of one G-step cycle, FLOPs of one D-only step) of a fresh trainer's kind, stepped
    from `state` (a fresh TrainState: the trainer's kind decides its type)."""
    trainer = make_trainer()
    trainer.begin_epoch(0)
    trainer.train_modules()
    n_critic = trainer.p.n_critic
    counts = []
    for i in range(n_critic):
        with _total_flop_counter() as fc:
            trainer.train_step(i % max(trainer.steps_per_epoch, 1), state, log_now=False)
        counts.append(fc.get_total_flops())
    d_only = float(counts[0]) if n_critic > 1 else 0.0
    return float(sum(counts)), d_only


def monitor_latent(trainer, n: int, seed: int, variant: str) -> Tensor:
    """The fixed inputs every check of this training scores: the same draw in the train
    stage (pixel diversity) and in the quality stage (judge features)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, variant, "monitor"))
    return trainer.monitor_latent(n, gen)


class SnapshotMonitor:
    """Saves the sampler every `every` epochs; with early stop on, runs the pixel-space
    collapse detector and keeps the most diverse weights."""

    def __init__(self, every: int, threshold: float, patience: int, early_stop: bool,
                 flops_per_g_step: float, flops_per_d_step: float, n_critic: int, out_dir: Path):
        self.every = every
        self.early_stop = early_stop
        self.flops_per_g_step = flops_per_g_step
        self.flops_per_d_step = flops_per_d_step
        self.n_critic = n_critic
        self.dir = out_dir / SNAPSHOT_DIR
        self.rows: list[dict[str, float]] = []
        self.detector = CollapseDetector(threshold, patience, mode="max")
        self.best_state: dict | None = None
        self.z: Tensor | None = None
        self.real_spread = 1.0

    def setup_diversity(self, trainer, real: Tensor, seed: int, variant: str) -> None:
        n = min(DIVERSITY_N, len(real))
        pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(
            derive_seed(seed, "monitor-real")))[:n]
        self.real_spread = mean_pairwise_distance(real[pick].flatten(1).float())
        self.z = monitor_latent(trainer, n, seed, variant)

    def due(self, epoch_done: int, last: bool) -> bool:
        return self.every > 0 and (epoch_done % self.every == 0 or last)

    def flops(self, g_steps: int, d_steps: int) -> float:
        extra_d = d_steps - g_steps * self.n_critic  # D steps after the last G step
        return g_steps * self.flops_per_g_step + max(extra_d, 0) * self.flops_per_d_step

    def snapshot_path(self, step: int) -> Path:
        return self.dir / f"step_{step:07d}.pt"

    @torch.no_grad()
    def check(self, trainer, step: int, epoch: int, d_steps: int) -> dict[str, float]:
        sampler = trainer.sampler()
        was_training = sampler.training
        sampler.eval()
        state = {k: v.detach().cpu().clone() for k, v in sampler.state_dict().items()}
        row = {"step": float(step), "epoch": float(epoch), "d_steps": float(d_steps),
               "gflops": round(self.flops(step, d_steps) / 1e9, 3)}
        if self.early_stop:
            images = trainer.monitor_images(self.z).cpu()
            ok = bool(torch.isfinite(images).all())
            div = mean_pairwise_distance(images.flatten(1).float()) / self.real_spread if ok else math.nan
            self.detector.update(step, div)
            if self.detector.improved:
                self.best_state = copy.deepcopy(state)
            row.update(diversity_pixels=div, collapsed=float(self.detector.collapsed))
        sampler.train(was_training)
        save_torch({"state_dict": state, "step": step}, self.snapshot_path(step))
        self.rows.append(row)
        write_json(self.dir / INDEX_FILE, {"snapshots": self.rows})
        return row

    @property
    def should_stop(self) -> bool:
        return self.early_stop and self.detector.collapsed

    # -- checkpoints: a resumed run continues the detector and keeps the best weights --
    def state(self) -> dict:
        d = self.detector
        return {"rows": self.rows, "best_state": self.best_state,
                "detector": {"history": list(d.history), "warnings": d.warnings,
                             "best_step": d.best_step, "best_signal": d.best_signal,
                             "min_signal": d.min_signal, "streak": d.streak}}

    def load(self, blob: dict | None) -> None:
        if not blob:
            return
        self.rows = list(blob["rows"])
        self.best_state = blob["best_state"]
        for k, v in blob["detector"].items():
            if k == "history":
                v = [tuple(x) for x in v]
            if k != "collapsed":
                setattr(self.detector, k, v)
