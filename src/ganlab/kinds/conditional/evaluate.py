"""`kind: conditional`, the evaluate stage's part."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganlab.config.params import Params
from ganlab.data.images import Split, to_unit_range
from ganlab.kinds.base import ScoringKind
from ganlab.metrics.conditional import conditional_accuracy, per_class_accuracy, per_class_fid
from ganlab.metrics.scoring import ScoringContext, judge_accuracy, score_sample_file
from ganlab.util import GanlabError, read_npz


def conditional_metrics(params: Params, ext, samples: np.ndarray, labels: np.ndarray,
                         train: Split, test: Split) -> dict[str, float]:
    num_classes = int(train.labels.max() + 1)
    gen_feats, gen_probs = (t.numpy().astype(np.float64) for t in ext(to_unit_range(samples)))
    train_feats = ext(to_unit_range(train.images))[0].numpy().astype(np.float64)
    test_feats = ext(to_unit_range(test.images))[0].numpy().astype(np.float64)
    # one N for every class and its floor: the smaller of the held-out and generated counts
    n_pc = int(min(np.bincount(test.labels, minlength=num_classes).min(),
                   np.bincount(labels, minlength=num_classes).min()))
    intra = per_class_fid(gen_feats, labels, train_feats, train.labels, num_classes, n_pc)
    floor = per_class_fid(test_feats, test.labels, train_feats, train.labels, num_classes, n_pc)
    acc_c = per_class_accuracy(gen_probs, labels, num_classes)
    out = {
        "conditional_accuracy": conditional_accuracy(gen_probs, labels),
        "judge_test_accuracy": judge_accuracy(Path("metrics/judge.json")),
        "intra_fid_judge_mean": float(np.mean(intra)),
        "intra_fid_floor_mean": float(np.mean(floor)),
        "intra_fid_n_per_class": float(n_pc),
    }
    for c in range(num_classes):
        out[f"intra_fid_judge_c{c}"] = intra[c]
        out[f"intra_fid_floor_c{c}"] = floor[c]
        out[f"conditional_accuracy_c{c}"] = acc_c[c]
    return {k: round(float(v), 6) for k, v in out.items()}


def check_labels(path: Path, variant: str, num_classes: int) -> None:
    """A conditional sample file's `labels`: one class in 0..C-1 per image."""
    arrays = read_npz(path, f"ganlab sample {variant}", ("images", "labels"))
    labels, n = arrays["labels"], len(arrays["images"])
    if (labels.dtype.kind not in "iu" or labels.shape != (n,) or n == 0 or labels.min() < 0
            or labels.max() >= num_classes):
        raise GanlabError(f"{path}: `labels` must be {n} classes in 0..{num_classes - 1}, one per "
                          f"image, got {labels.dtype} {labels.shape}; rerun `ganlab sample {variant}`")


def score(s: ScoringContext, variant: str, samples_path: Path) -> dict:
    """The unconditional metrics of the first N images, then the class-conditional ones."""
    check_labels(samples_path, variant, int(s.train.labels.max() + 1))  # before any scoring
    metrics, arrays = score_sample_file(s, variant, samples_path)
    metrics.update(conditional_metrics(s.params, s.judge, arrays["images"], arrays["labels"],
                                       s.train, s.test))
    return metrics


def summary(metrics: dict, floor: dict, n: int) -> str:
    return (f"fid_judge {metrics.get('fid_judge')} (floor {floor.get('fid_judge')}) on N={n}, "
            f"classes covered {metrics.get('classes_covered')}; conditional accuracy "
            f"{metrics['conditional_accuracy']:.3f} (judge ceiling {metrics['judge_test_accuracy']:.3f}); "
            f"intra-FID mean {metrics['intra_fid_judge_mean']:.2f} "
            f"(floor {metrics['intra_fid_floor_mean']:.2f})")


KIND = ScoringKind(name="conditional", score=score, summary=summary, sample_file="samples.npz",
                   compares_to_floor=True)
