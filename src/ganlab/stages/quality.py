"""Stage `quality`: quality against compute, from the snapshots the train stage saved.

Each snapshot (the sampler's weights every `monitor.every` epochs) generates a fixed batch
(fixed noise, seeded apart from training: the draw the train stage's monitor uses) that is
scored in the judge's feature space against a fixed set of training images of the same size:
fid_judge, improved precision and recall, and a diversity signal (mean pairwise feature
distance, generated over real) that feeds the same `CollapseDetector` as the toy suite.

Outputs: metrics/quality/<V>.csv (the first seed's checks: the DVC plots file) and
metrics/quality/<V>.json (its summary, and every seed's rows and summary under `seeds`).
Scoring apart from training means a change to `monitor.n_samples`, `monitor.k_pr` or the
judge rescores the snapshots and retrains nothing.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from ganlab.config.params import Params
from ganlab.core.collapse import CollapseDetector, mean_pairwise_distance
from ganlab.data.images import load_split, to_unit_range
from ganlab.kinds.training import build_trainer
from ganlab.metrics.fid import fid
from ganlab.metrics.prdc import precision_recall
from ganlab.nets.judge import JudgeExtractor, load_judge
from ganlab.runtime.monitor import INDEX_FILE, SNAPSHOT_DIR, monitor_latent
from ganlab.runtime.paths import PREPARED_DIR, VARIANTS_DIR
from ganlab.util import GanlabError, atomic_path, derive_seed, read_json, resolve_device, write_json

COLUMNS = ["step", "epoch", "gflops", "fid_judge", "precision_judge", "recall_judge",
           "diversity_judge", "collapsed"]
QUALITY_DIR = Path("metrics/quality")


def write_quality_csv(path: Path, rows: list[dict[str, float]]) -> None:
    def fmt(v: float) -> str:
        # CSV for DVC plots: a diverged check is written as an empty cell, not inf/nan
        return f"{v:.6g}" if np.isfinite(v) else ""

    lines = [",".join(COLUMNS)] + [",".join(fmt(r[c]) for c in COLUMNS) for r in rows]
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


@torch.no_grad()
def score_snapshots(params: Params, variant: str, seed: int, ext: JudgeExtractor,
                    real: torch.Tensor, device: torch.device, data_dir: Path) -> tuple[list, dict]:
    """(rows, summary) of one training seed's snapshots."""
    m = params.monitor
    folder = VARIANTS_DIR / variant / params.seed_dir(seed) / SNAPSHOT_DIR
    index = read_json(folder / INDEX_FILE, f"ganlab train {variant}")["snapshots"]
    # the trainer of this seed supplies the kind's fixed inputs and its sampler net (built to
    # generate only: the cycle kind's semantic classifiers are not pretrained for nothing)
    trainer = build_trainer(dataclasses.replace(params, seed=seed), variant, data_dir, device,
                            generate_only=True)
    n = min(m.n_samples, len(real))
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(
        derive_seed(params.seed, "monitor-real")))[:n]
    real_feats, _ = ext(real[pick])
    real64 = real_feats.double().numpy()
    real_spread = mean_pairwise_distance(real_feats)
    z = monitor_latent(trainer, n, params.seed, variant)  # the data seed: one draw for every seed
    sampler = trainer.sampler()
    detector = CollapseDetector(m.collapse_threshold, m.collapse_patience, mode="max")
    rows = []
    for snap in index:
        step = int(snap["step"])
        path = folder / f"step_{step:07d}.pt"
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torn or foreign: one line naming it
            raise GanlabError(f"{path}: unreadable snapshot ({e.__class__.__name__}); rerun "
                              f"`ganlab train {variant}`") from None
        sampler.load_state_dict(blob["state_dict"])
        trainer.ema_stale = False  # the snapshot carries its own batch-norm statistics
        sampler.eval()
        feats, _ = ext(trainer.monitor_images(z).cpu())
        if bool(torch.isfinite(feats).all()):
            f64 = feats.double().numpy()
            fid_v = fid(f64, real64)
            prec, rec = precision_recall(real64, f64, k=m.k_pr)
            div = mean_pairwise_distance(feats) / real_spread
        else:  # a diverged generator: recorded as such, never as a good score
            fid_v, prec, rec, div = math.inf, 0.0, 0.0, math.nan
        detector.update(step, div)
        rows.append({"step": float(step), "epoch": float(snap["epoch"]), "gflops": snap["gflops"],
                     "fid_judge": fid_v, "precision_judge": prec, "recall_judge": rec,
                     "diversity_judge": div, "collapsed": float(detector.collapsed)})
    summary = {"collapse_warnings": detector.warnings,
               "min_diversity_judge": detector.min_signal,
               "best_diversity_step": detector.best_step}
    if rows:
        summary.update(monitor_fid_judge=rows[-1]["fid_judge"], monitor_gflops=rows[-1]["gflops"])
    return rows, summary


def _log_rows(run_file: Path, rows: list[dict[str, float]]) -> None:
    """The checks as `quality/*` metrics of the training run, at their G steps (finite values
    only); skipped when DVC restored the model from its cache and the run is not in this store."""
    from ganlab.tracking import runs as tracking

    run_id = tracking.read_run_file(run_file)
    if not tracking.run_exists(run_id):
        return
    tracking.log_metrics(run_id, [{"step": r["step"], **{f"quality/{k}": v for k, v in r.items()
                                   if k not in ("step", "epoch") and math.isfinite(v)}}
                                  for r in rows])


def run_quality(params: Params, variant: str, data_dir: Path = PREPARED_DIR, echo=print) -> dict:
    out_csv, out_json = QUALITY_DIR / f"{variant}.csv", QUALITY_DIR / f"{variant}.json"
    if params.monitor.every == 0:
        write_quality_csv(out_csv, [])
        write_json(out_json, {"monitor": "off"})
        echo(f"quality {variant}: monitor off (monitor.every: 0), nothing to score")
        return {}
    device = resolve_device(params.device)
    ext = JudgeExtractor(load_judge(device=device), device)
    real = to_unit_range(load_split(data_dir / "train.npz").images)
    per_seed = {s: score_snapshots(params, variant, s, ext, real, device, data_dir)
                for s in params.seeds}
    first_rows, first_summary = per_seed[params.seeds[0]]
    out = {**first_summary, "checks": len(first_rows)}
    if len(params.seeds) > 1:
        out["seeds"] = {str(s): {**summ, "rows": rows} for s, (rows, summ) in per_seed.items()}
    for s, (rows, _) in per_seed.items():  # each seed's checks into its own training run
        _log_rows(VARIANTS_DIR / variant / params.seed_dir(s) / "mlflow_run.json", rows)
    write_quality_csv(out_csv, first_rows)
    write_json(out_json, out)
    last = first_rows[-1] if first_rows else {}
    echo(f"quality {variant}: {len(first_rows)} snapshots scored; last fid_judge "
         f"{last.get('fid_judge', float('nan')):.2f} at {last.get('gflops', 0):.1f} GFLOPs")
    return out
