"""Quality against compute during training, and the collapse detector in the image loop.

Every `monitor.every` epochs a fixed batch of generated images (fixed noise, seeded apart
from training) is scored in the judge's feature space against a fixed set of training
images of the same size: fid_judge, improved precision and recall, and a diversity signal
(mean pairwise feature distance, generated over real) that feeds the same
`CollapseDetector` as the toy suite. Compute is counted two ways:
- training FLOPs: `torch.utils.flop_counter` over one G-step cycle of the variant (its
  n_critic D steps and the G step) on a separate, throwaway trainer, times the G steps.
  Deterministic and hardware-independent, so it goes into the DVC plots file;
- wall-clock training seconds: MLflow and the report only (they differ run to run).

Scoring reads the sampler in eval mode under no_grad and draws from its own generator, so
the trained weights are bit-identical with the monitor on or off (tested).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganlab.collapse import CollapseDetector, mean_pairwise_distance
from ganlab.params import Params
from ganlab.util import derive_seed


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


def count_step_flops(make_trainer: Callable[[], object]) -> tuple[float, float]:
    """(FLOPs of one G-step cycle, FLOPs of one D-only step) of a fresh trainer's kind."""
    from ganlab.train import TrainState

    trainer = make_trainer()
    trainer.begin_epoch(0)
    trainer.train_modules()
    state = TrainState()
    n_critic = trainer.p.n_critic
    counts = []
    for i in range(n_critic):
        with _total_flop_counter() as fc:
            trainer.train_step(i % max(trainer.steps_per_epoch, 1), state, log_now=False)
        counts.append(fc.get_total_flops())
    d_only = float(counts[0]) if n_critic > 1 else 0.0
    return float(sum(counts)), d_only


class QualityMonitor:
    """Scores the sampler every `every` epochs; decides early stops on collapse."""

    def __init__(self, params: Params, variant: str, real_images: Tensor, judge_extractor,
                 latent: Callable[[int, torch.Generator], Tensor], flops_per_g_step: float,
                 flops_per_d_step: float):
        m = params.monitor
        self.m = m
        self.ext = judge_extractor
        n = min(m.n_samples, len(real_images))
        pick = torch.randperm(len(real_images), generator=torch.Generator().manual_seed(
            derive_seed(params.seed, "monitor-real")))[:n]
        real_feats, _ = judge_extractor(real_images[pick])
        self.real_feats = real_feats.double().numpy()
        self.real_spread = mean_pairwise_distance(real_feats)
        gen = torch.Generator().manual_seed(derive_seed(params.seed, variant, "monitor"))
        self.z = latent(n, gen)
        self.n = n
        self.flops_per_g_step = flops_per_g_step
        self.flops_per_d_step = flops_per_d_step
        self.n_critic = params.variant(variant).n_critic
        self.detector = CollapseDetector(m.collapse_threshold, m.collapse_patience, mode="max")
        self.best_state: dict | None = None
        self.rows: list[dict[str, float]] = []
        self.seconds: list[list[float]] = []

    def due(self, epoch_done: int, last: bool) -> bool:
        return self.m.every > 0 and (epoch_done % self.m.every == 0 or last)

    def flops(self, g_steps: int, d_steps: int) -> float:
        extra_d = d_steps - g_steps * self.n_critic  # D steps after the last G step
        return g_steps * self.flops_per_g_step + max(extra_d, 0) * self.flops_per_d_step

    @torch.no_grad()
    def check(self, images: Tensor, step: int, epoch: int, d_steps: int, seconds: float,
              sampler_state: Callable[[], dict]) -> dict[str, float]:
        from ganlab.metrics.fid import fid
        from ganlab.metrics.prdc import precision_recall

        feats, _ = self.ext(images)
        ok = bool(torch.isfinite(feats).all())
        f64 = feats.double().numpy()
        if ok:
            fid_v = fid(f64, self.real_feats)
            prec, rec = precision_recall(self.real_feats, f64, k=self.m.k_pr)
            div = mean_pairwise_distance(feats) / self.real_spread
        else:  # a diverged generator: recorded as such, never as a good score
            fid_v, prec, rec, div = math.inf, 0.0, 0.0, math.nan
        self.detector.update(step, div)
        if self.detector.improved:
            self.best_state = copy.deepcopy(sampler_state())
        row = {"step": float(step), "epoch": float(epoch),
               "gflops": round(self.flops(step, d_steps) / 1e9, 3),
               "fid_judge": fid_v, "precision_judge": prec, "recall_judge": rec,
               "diversity_judge": div, "collapsed": float(self.detector.collapsed)}
        self.rows.append(row)
        self.seconds.append([float(step), round(seconds, 3)])
        return row

    @property
    def should_stop(self) -> bool:
        return self.m.early_stop_on_collapse and self.detector.collapsed

    def summary(self) -> dict[str, float]:
        d = self.detector
        return {"collapse_warnings": d.warnings,
                "min_diversity_judge": d.min_signal if math.isfinite(d.min_signal) else -1.0,
                "best_diversity_step": d.best_step if d.best_step is not None else -1}


def write_quality_csv(path: Path, rows: list[dict[str, float]]) -> None:
    from ganlab.util import atomic_path

    cols = ["step", "epoch", "gflops", "fid_judge", "precision_judge", "recall_judge",
            "diversity_judge", "collapsed"]

    def fmt(v: float) -> str:
        # CSV for DVC plots: a diverged check is written as an empty cell, not inf/nan
        return f"{v:.6g}" if np.isfinite(v) else ""

    lines = [",".join(cols)] + [",".join(fmt(r[c]) for c in cols) for r in rows]
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
