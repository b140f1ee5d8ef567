"""Stage `evaluate`: score a variant's samples in the judge's feature space, beside the floor.

Sample counts matter for FID/KID (FID is biased upwards at small N), so generated samples
are scored at the same count as the held-out real images that define the floor:
n = min(evaluate.n_samples, n_test). Both counts are written next to the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ganlab.data.images import Split, load_meta, load_split, to_unit_range
from ganlab.params import Params
from ganlab.util import GanlabError, derive_seed, resolve_device, write_json


def inception_extractor(params: Params, device: torch.device):
    """torchvision's Inception-v3 from the local weights file named in params, or None."""
    path = params.evaluate.inception_weights
    if not path:
        return None
    from ganlab.metrics.features import InceptionExtractor

    try:
        return InceptionExtractor.from_weights_file(path, device=str(device))
    except (FileNotFoundError, ValueError) as e:
        raise GanlabError(f"evaluate.inception_weights: {e}") from None


def score_images(params: Params, extractor, images: torch.Tensor, train: Split, test: Split,
                 seed_key: str, is_floor: bool = False, pixel_and_class: bool = True
                 ) -> dict[str, float]:
    """All metrics of `images` (in [-1, 1]) against the train split, in `extractor` space.

    Pixel-space memorisation and the digit-class histogram do not depend on the feature
    extractor; `pixel_and_class=False` skips them for a second extractor (Inception).
    """
    from ganlab.metrics import compute_all, memorisation

    ep = params.evaluate
    gen_feats, gen_probs = extractor(images)
    ref_feats, _ = extractor(to_unit_range(train.images))
    num_classes = int(train.labels.max() + 1)
    seed = derive_seed(params.seed, seed_key) % (2**31)
    as64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    metrics = compute_all(
        as64(gen_feats), as64(gen_probs), as64(ref_feats), None,
        extractor=extractor.name, num_classes=num_classes if pixel_and_class else None,
        reference_counts=np.bincount(train.labels, minlength=num_classes),
        kid_subsets=ep.kid_subsets, kid_subset_size=ep.kid_subset_size,
        is_splits=ep.is_splits, k_pr=ep.k_pr, k_dc=ep.k_dc, seed=seed,
    )
    if pixel_and_class:
        flat = lambda a: np.asarray(a, dtype=np.float32).reshape(len(a), -1)  # noqa: E731
        train_px = flat(train.images) / 127.5 - 1
        test_px = flat(test.images) / 127.5 - 1
        if is_floor:
            # Held-out images are their own nearest held-out neighbour; score half of them
            # against the other half so the floor's memorisation numbers mean the same thing.
            half = len(test.labels) // 2
            metrics.update(memorisation(test_px[:half], train_px, test_px[half:], seed=seed))
        else:
            metrics.update(memorisation(flat(images.numpy()), train_px, test_px, seed=seed))
    return {k: round(float(v), 6) for k, v in metrics.items()}


def score_all_extractors(params: Params, judge_ext, inception_ext, images: torch.Tensor,
                         train: Split, test: Split, seed_key: str, is_floor: bool = False) -> dict:
    metrics = score_images(params, judge_ext, images, train, test, seed_key, is_floor)
    if inception_ext is not None:
        extra = score_images(params, inception_ext, images, train, test, seed_key, is_floor,
                             pixel_and_class=False)
        metrics.update({k: v for k, v in extra.items() if "inception" in k})
    return metrics


def run_evaluate(params: Params, variant: str, data_dir: Path = Path("data/prepared"),
                 echo=print) -> dict:
    from ganlab import tracking
    from ganlab.judge import load_judge
    from ganlab.nets.judge import JudgeExtractor

    params.variant(variant)
    device = resolve_device(params.device)
    inception = inception_extractor(params, device)  # a bad weights path fails before work
    samples_path = Path("samples") / variant / "samples.npz"
    if not samples_path.exists():
        raise GanlabError(f"{samples_path}: samples not found (run `ganlab sample {variant}`)")
    run_file = Path("models/variants") / variant / "mlflow_run.json"
    if not run_file.exists():
        raise GanlabError(f"{run_file}: not found (run `ganlab train {variant}` first)")
    train = load_split(data_dir / "train.npz")
    test = load_split(data_dir / "test.npz")
    with np.load(samples_path) as z:
        samples = z["images"]
    n = min(params.evaluate.n_samples, len(test.labels), len(samples))
    ext = JudgeExtractor(load_judge(device=device), device)
    metrics = score_all_extractors(params, ext, inception, to_unit_range(samples[:n]),
                                   train, test, variant)
    write_json(Path("metrics/eval") / f"{variant}.json", metrics)

    run_id = tracking.read_run_file(run_file)
    if tracking.run_exists(run_id):
        # When DVC restored the model from its run cache, this is the run that trained it.
        echo(f"evaluate {variant}: logging into MLflow run {run_id} (the run that trained it)")
    else:
        meta = load_meta(data_dir)
        tags = tracking.run_tags(variant, meta["train_sha256"])
        tags["note"] = f"training run {run_id} is not in this MLflow store (restored by DVC)"
        run_id = tracking.start_run(variant, {"variant": variant}, tags)
        echo(f"evaluate {variant}: training run not in this store; new MLflow run {run_id}")
    floor = json.loads(Path("metrics/floor.json").read_text())
    rows = {f"eval/{k}": v for k, v in metrics.items()}
    rows.update({f"floor/{k}": v for k, v in floor.items()})
    tracking.log_metrics(run_id, [{"step": 0, **rows}])
    out = Path("samples") / variant
    tracking.log_artifacts(run_id, [out / "grid.png", out / "interpolation.png"], "samples")
    tracking.set_terminated(run_id)
    echo(f"evaluate {variant}: fid_judge {metrics['fid_judge']:.3f} "
         f"(floor {floor['fid_judge']:.3f}), classes covered {metrics['classes_covered']:.0f}")
    return metrics
