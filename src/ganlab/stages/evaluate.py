"""Stage `evaluate`: score a variant's samples in the judge's feature space, beside the floor.

Sample counts matter (FID is biased upwards at small N; PRDC radii and IS splits depend on
N), so a variant is scored on exactly the N images the floor was scored on
(ganlab.metrics.scoring.comparison_n); a floor.json written for another N is refused, not compared.
"""

from __future__ import annotations

import math
from pathlib import Path

from ganlab.config.params import Params
from ganlab.core.stats import aggregate_seeds
from ganlab.data.images import load_meta, load_split
from ganlab.kinds.scoring import kind_of
from ganlab.metrics.scoring import References, ScoringContext, check_floor_n, inception_extractor
from ganlab.nets.judge import JudgeExtractor, load_judge
from ganlab.runtime.paths import FLOOR_PATH, PREPARED_DIR, SAMPLES_DIR, VARIANTS_DIR
from ganlab.tracking import runs as tracking
from ganlab.util import GanlabError, read_json, resolve_device, write_json


def _finite_numbers(prefix: str, metrics: dict) -> dict[str, float]:
    # MLflow takes finite numbers only (the JSON stores a non-finite value as null)
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def run_evaluate(params: Params, variant: str, data_dir: Path = PREPARED_DIR, echo=print) -> dict:
    kind = kind_of(params, variant)
    device = resolve_device(params.device)
    inception = inception_extractor(params, device)  # a bad weights path fails before work
    paths = {seed: SAMPLES_DIR / variant / params.seed_dir(seed) / kind.sample_file
             for seed in params.seeds}
    for seed, path in paths.items():
        if not path.exists():
            raise GanlabError(f"{path}: samples of training seed {seed} not found "
                              f"(run `ganlab sample {variant}`)")
    run_files = {seed: VARIANTS_DIR / variant / params.seed_dir(seed) / "mlflow_run.json"
                 for seed in params.seeds}
    for run_file in run_files.values():
        if not run_file.exists():
            raise GanlabError(f"{run_file}: not found (run `ganlab train {variant}` first)")
    run_ids = {seed: tracking.read_run_file(f) for seed, f in run_files.items()}  # before work
    tracking.client()  # and the store they are in: corrupt, copied or down fails here
    if not FLOOR_PATH.exists():
        raise GanlabError(f"{FLOOR_PATH}: not found (run `ganlab floor` first)")
    train, test = load_split(data_dir / "train.npz"), load_split(data_dir / "test.npz")
    ref = References.build(params, train, test)
    floor = read_json(FLOOR_PATH, "ganlab floor", ("n_compared",))
    if kind.compares_to_floor:
        check_floor_n(floor, ref.n, variant)  # before any work: a floor of another N compares nothing
    ctx = ScoringContext(params, JudgeExtractor(load_judge(device=device), device), inception,
                         ref, train, test, device)
    per_seed = {seed: kind.score(ctx, variant, path) for seed, path in paths.items()}
    metrics = aggregate_seeds(per_seed)

    # MLflow first, the DVC metrics file last: a failed MLflow step leaves the old file whole
    first = params.seeds[0]
    run_id = run_ids[first]
    # The training run ended with its stage; its metrics are added without reopening it, so
    # its status and duration stay those of the training.
    new_run = not tracking.run_exists(run_id)
    if not new_run:
        # When DVC restored the model from its run cache, this is the run that trained it.
        echo(f"evaluate {variant}: logging into MLflow run {run_id} (the run that trained it)")
    else:
        meta = load_meta(data_dir)
        tags = tracking.run_tags(variant, meta["train_sha256"], params.variant(variant),
                                 source="ganlab evaluate")
        tags["note"] = f"training run {run_id} is not in this MLflow store (restored by DVC)"
        run_id = tracking.start_run(variant, {"variant": variant}, tags)
        echo(f"evaluate {variant}: training run not in this store; new MLflow run {run_id}")
    # every seed's run gets its own numbers under eval/*; the first seed's run also holds the
    # aggregate over seeds, under eval_mean/* and eval_ci95/* (never under eval/*)
    rows = {**_finite_numbers("eval", per_seed[first]), **_finite_numbers("floor", floor)}
    if len(params.seeds) > 1:
        rows.update(_finite_numbers("eval_mean", {k: v for k, v in metrics.items()
                                                  if not k.endswith("_ci95")}))
        rows.update(_finite_numbers("eval_ci95", {k.removesuffix("_ci95"): v for k, v in metrics.items()
                                                  if k.endswith("_ci95")}))
    tracking.log_metrics(run_id, [{"step": 0, **rows}])
    for seed in params.seeds[1:]:  # each replica seed's own numbers go to its own training run
        rid = run_ids[seed]
        if tracking.run_exists(rid):
            tracking.log_metrics(rid, [{"step": 0, **_finite_numbers("eval", per_seed[seed])}])
    out = SAMPLES_DIR / variant
    tracking.log_artifacts(run_id, [f for f in (out / "grid.png", out / "interpolation.png")
                                    if f.exists()], "samples")
    if new_run:
        tracking.set_terminated(run_id)
    write_json(Path("metrics/eval") / f"{variant}.json", metrics)
    echo(f"evaluate {variant}: {kind.summary(metrics, floor, ref.n)}")
    return metrics
