"""Stage `evaluate`: score a variant's samples in the judge's feature space, beside the floor.

Sample counts matter (FID is biased upwards at small N; PRDC radii and IS splits depend on
N), so a variant is scored on exactly the N images the floor was scored on
(ganlab.scoring.comparison_n); a floor.json written for another N is refused, not compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ganlab.data.images import load_meta, load_split
from ganlab.params import Params
from ganlab.scoring import References, inception_extractor, load_judge, score_all_extractors
from ganlab.util import GanlabError, resolve_device, write_json

FLOOR_PATH = Path("metrics/floor.json")


def check_floor_n(floor: dict, n: int, variant: str, floor_path: Path = FLOOR_PATH) -> None:
    """Refuse to set a variant scored on n images beside a floor scored on another count."""
    floor_n = floor.get("n_compared")
    if floor_n != n:
        raise GanlabError(
            f"{floor_path} was scored on N={floor_n} held-out images but "
            f"metrics/eval/{variant}.json would score N={n} (min of evaluate.n_samples, "
            "sample.n_samples, n_test); rerun `ganlab judge` so both use the same N")


SAMPLE_FILES = {"unconditional": "samples.npz", "conditional": "samples.npz",
                "cycle": "translations.npz"}


def _score(params: Params, variant: str, samples_path: Path, ext, inception, ref: References,
           train, test, device) -> dict:
    """Every metric of one seed's samples (the same N and references for every seed)."""
    p = params.variant(variant)
    if p.kind == "cycle":
        from ganlab.evaluate_kinds import evaluate_cycle

        return evaluate_cycle(params, variant, samples_path, ext, train, test, device)
    with np.load(samples_path) as z:
        samples = z["images"]
        labels = z["labels"] if p.kind == "conditional" else None
    if len(samples) < ref.n:
        raise GanlabError(f"{samples_path}: {len(samples)} samples, fewer than N={ref.n} "
                          f"(rerun `ganlab sample {variant}`)")
    metrics = score_all_extractors(params, ext, inception, samples[: ref.n], ref, variant)
    if labels is not None:
        from ganlab.evaluate_kinds import evaluate_conditional

        metrics.update(evaluate_conditional(params, ext, samples, labels, train, test))
    return metrics


# references every seed shares (ceilings, floors, sample counts): one value, no interval
_SHARED = ("judge_test_accuracy", "judge_uci_test_accuracy", "chance", "n_fid",
           "intra_fid_n_per_class")


def aggregate_seeds(per_seed: dict[int, dict]) -> dict:
    """One seed: its metrics, unchanged. Several: each metric's mean over seeds under its own
    name, `<metric>_ci95` (half-width of the Student-t 95% interval), `n_seeds`, and every
    seed's values under `seeds.<s>` (what the report's Welch tests read)."""
    from ganlab.stats import mean_ci

    seeds = list(per_seed)
    if len(seeds) == 1:
        return per_seed[seeds[0]]
    out: dict = {}
    for k, v in per_seed[seeds[0]].items():
        vals = [per_seed[s].get(k) for s in seeds]
        shared = k in _SHARED or "floor" in k or k.endswith("_untranslated")
        if shared or not all(isinstance(x, int | float) for x in vals):
            out[k] = v
            continue
        ci = mean_ci(vals)
        out[k] = round(ci["mean"], 6)
        out[f"{k}_ci95"] = None if ci["half_width"] is None else round(ci["half_width"], 6)
    out["n_seeds"] = len(seeds)
    out["seeds"] = {str(s): per_seed[s] for s in seeds}
    return out


def run_evaluate(params: Params, variant: str, data_dir: Path = Path("data/prepared"),
                 echo=print) -> dict:
    from ganlab import tracking
    from ganlab.judge_net import JudgeExtractor

    p = params.variant(variant)
    device = resolve_device(params.device)
    inception = inception_extractor(params, device)  # a bad weights path fails before work
    paths = {seed: Path("samples") / variant / params.seed_dir(seed) / SAMPLE_FILES[p.kind]
             for seed in params.seeds}
    for seed, path in paths.items():
        if not path.exists():
            raise GanlabError(f"{path}: samples of training seed {seed} not found "
                              f"(run `ganlab sample {variant}`)")
    run_file = Path("models/variants") / variant / "mlflow_run.json"
    if not run_file.exists():
        raise GanlabError(f"{run_file}: not found (run `ganlab train {variant}` first)")
    if not FLOOR_PATH.exists():
        raise GanlabError(f"{FLOOR_PATH}: not found (run `ganlab judge` first)")
    train, test = load_split(data_dir / "train.npz"), load_split(data_dir / "test.npz")
    ref = References.build(params, train, test)
    floor = json.loads(FLOOR_PATH.read_text())
    if p.kind != "cycle":
        check_floor_n(floor, ref.n, variant)  # before any work: a floor of another N compares nothing
    ext = JudgeExtractor(load_judge(device=device), device)
    per_seed = {seed: _score(params, variant, path, ext, inception, ref, train, test, device)
                for seed, path in paths.items()}
    metrics = aggregate_seeds(per_seed)
    write_json(Path("metrics/eval") / f"{variant}.json", metrics)

    run_id = tracking.read_run_file(run_file)
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
    # Only finite numbers go to MLflow (write_json stores a non-finite value as null).
    rows = {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
    rows.update({f"floor/{k}": v for k, v in floor.items() if isinstance(v, int | float)})
    tracking.log_metrics(run_id, [{"step": 0, **rows}])
    for seed in params.seeds[1:]:  # each replica seed's own numbers go to its own training run
        seed_run = Path("models/variants") / variant / params.seed_dir(seed) / "mlflow_run.json"
        if seed_run.exists() and tracking.run_exists(rid := tracking.read_run_file(seed_run)):
            tracking.log_metrics(rid, [{"step": 0, **{f"eval/{k}": v for k, v in per_seed[seed].items()
                                                      if isinstance(v, int | float)}}])
    out = Path("samples") / variant
    tracking.log_artifacts(run_id, [out / "grid.png", out / "interpolation.png"], "samples")
    if new_run:
        tracking.set_terminated(run_id)
    if p.kind == "cycle":
        echo(f"evaluate {variant}: label preservation MNIST->UCI "
             f"{metrics['preserve_mnist_to_uci']:.3f}, UCI->MNIST {metrics['preserve_uci_to_mnist']:.3f}; "
             f"cycle L1 {metrics['cycle_l1_mnist']:.3f}/{metrics['cycle_l1_uci']:.3f}")
        return metrics
    fid_now, fid_floor = metrics.get("fid_judge"), floor.get("fid_judge")
    echo(f"evaluate {variant}: fid_judge {fid_now} (floor {fid_floor}) on N={ref.n}, "
         f"classes covered {metrics.get('classes_covered')}")
    if p.kind == "conditional":
        echo(f"evaluate {variant}: conditional accuracy {metrics['conditional_accuracy']:.3f} "
             f"(judge ceiling {metrics['judge_test_accuracy']:.3f}); intra-FID mean "
             f"{metrics['intra_fid_judge_mean']:.2f} (floor {metrics['intra_fid_floor_mean']:.2f})")
    return metrics
