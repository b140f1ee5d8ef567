"""Scoring shared by stage `floor` (the real-data floor) and stage `evaluate` (each variant).

Both stages must score the same number of images against the same references, or the
floor is not the floor of the numbers beside it: FID is biased upwards at small N, PRDC's
k-NN radii and the IS splits depend on N too. So N is computed here, once:
N = min(evaluate.n_samples, sample.n_samples, n_test), written into floor.json and every
metrics/eval/<V>.json as `n_compared`, and evaluate refuses to compare when they differ.

This module sits below both stages (it imports neither), so each stage's import closure is
only what it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.config.params import Params
from ganlab.data.images import Split, to_unit_range
from ganlab.runtime.paths import FLOOR_PATH
from ganlab.util import GanlabError, derive_seed, read_json, read_npz


def comparison_n(params: Params, n_test: int) -> int:
    """N: images scored per variant and, from the held-out split, for the floor."""
    return min(params.evaluate.n_samples, params.sample.n_samples, n_test)


@dataclass
class References:
    """The real images every score is measured against, and the seeded choices made on them.

    `order` is a seeded permutation of the held-out split. The floor scores its first N
    images. Memorisation needs held-out images that are not the ones being scored, so its
    held-out reference is the second half of `order` for the floor and every variant
    alike, and the floor's memorisation checks (up to N of) the first half.
    """

    train: Split
    test: Split
    n: int
    order: np.ndarray
    real_seed: int  # the real-side subsamples (PRDC, memorisation's train side): shared

    @classmethod
    def build(cls, params: Params, train: Split, test: Split) -> References:
        n_test = len(test.labels)
        rng = np.random.default_rng(derive_seed(params.seed, "heldout-order") % (2**32))
        return cls(train, test, comparison_n(params, n_test), rng.permutation(n_test),
                   derive_seed(params.seed, "real-subsample") % (2**31))

    @property
    def half(self) -> int:
        return len(self.order) // 2

    def floor_images(self) -> np.ndarray:
        return self.test.images[self.order[: self.n]]

    def floor_memorisation_images(self) -> np.ndarray:
        return self.test.images[self.order[: min(self.n, self.half)]]

    def memorisation_heldout(self) -> np.ndarray:
        return self.test.images[self.order[self.half :]]


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


def _pixels(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).reshape(len(a), -1) / 127.5 - 1


def score_images(params: Params, extractor, images: np.ndarray, ref: References, seed_key: str,
                 memorisation_images: np.ndarray | None) -> dict[str, float]:
    """All metrics of uint8 `images` (N of them) against the train split, in `extractor` space.

    Pixel-space memorisation and the class histogram do not depend on the extractor;
    `memorisation_images=None` skips both (for a second extractor, Inception).
    """
    from ganlab.metrics.memorisation import memorisation
    from ganlab.metrics.suite import compute_all

    if len(images) != ref.n:
        raise ValueError(f"scoring {len(images)} images, but N = {ref.n}")
    ep = params.evaluate
    gen_feats, gen_probs = extractor(to_unit_range(images))
    ref_feats, _ = extractor(to_unit_range(ref.train.images))
    num_classes = int(ref.train.labels.max() + 1)
    as64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    with_classes = memorisation_images is not None
    metrics = compute_all(
        as64(gen_feats), as64(gen_probs), as64(ref_feats), None,
        extractor=extractor.name, num_classes=num_classes if with_classes else None,
        reference_counts=np.bincount(ref.train.labels, minlength=num_classes),
        kid_subsets=ep.kid_subsets, kid_subset_size=ep.kid_subset_size,
        is_splits=ep.is_splits, k_pr=ep.k_pr, k_dc=ep.k_dc,
        seed=derive_seed(params.seed, seed_key) % (2**31), prdc_seed=ref.real_seed,
    )
    if with_classes:
        metrics.update(memorisation(_pixels(memorisation_images), _pixels(ref.train.images),
                                    _pixels(ref.memorisation_heldout()), seed=ref.real_seed))
    return {**{k: round(float(v), 6) for k, v in metrics.items()}, "n_compared": ref.n}


def score_all_extractors(params: Params, judge_ext, inception_ext, images: np.ndarray,
                         ref: References, seed_key: str,
                         memorisation_images: np.ndarray | None = None) -> dict:
    """Judge-space metrics (with memorisation of `memorisation_images`, default `images`),
    plus the Inception-space ones when an Inception extractor is given."""
    mem = images if memorisation_images is None else memorisation_images
    metrics = score_images(params, judge_ext, images, ref, seed_key, mem)
    if inception_ext is not None:
        extra = score_images(params, inception_ext, images, ref, seed_key, None)
        metrics.update({k: v for k, v in extra.items() if "inception" in k})
    return metrics


def check_floor_n(floor: dict, n: int, variant: str, floor_path: Path = FLOOR_PATH) -> None:
    """Refuse to set a variant scored on n images beside a floor scored on another count."""
    floor_n = floor.get("n_compared")
    if floor_n != n:
        raise GanlabError(
            f"{floor_path} was scored on N={floor_n} held-out images but "
            f"metrics/eval/{variant}.json would score N={n} (min of evaluate.n_samples, "
            "sample.n_samples, n_test); rerun `ganlab floor` so both use the same N")


def judge_accuracy(path: Path) -> float:
    rewriter = "ganlab judge-uci" if Path(path).stem == "judge_uci" else "ganlab judge"
    if not Path(path).exists():
        raise GanlabError(f"{path}: not found (run the judge stage first: `{rewriter}`)")
    acc = read_json(path, rewriter, ("judge_test_accuracy",))["judge_test_accuracy"]
    if isinstance(acc, bool) or not isinstance(acc, int | float):
        raise GanlabError(f"{path}: judge_test_accuracy {acc!r} is not a number; rerun `{rewriter}`")
    return float(acc)


def check_samples(path: Path, arrays: dict[str, np.ndarray], shape: tuple[int, ...],
                  variant: str) -> np.ndarray:
    """The `images` array of a sample file, refused unless it is uint8 pixels (0..255) of
    `shape` (C, H, W): one error naming the file, what it holds and what is allowed."""
    rerun = f"rerun `ganlab sample {variant}`"
    if "images" not in arrays:
        raise GanlabError(f"{path}: no `images` array (has {', '.join(arrays) or 'none'}); {rerun}")
    images = arrays["images"]
    if images.dtype != np.uint8:
        raise GanlabError(f"{path}: `images` are {images.dtype}, not uint8 pixels in 0..255 "
                          f"(float samples in [-1, 1] must be converted first); {rerun}")
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise GanlabError(f"{path}: `images` have shape {images.shape}, the data's images are "
                          f"(N, {', '.join(map(str, shape))}); {rerun}")
    return images


@dataclass
class ScoringContext:
    """What every seed's scoring shares: the feature extractors, the references and splits."""

    params: Params
    judge: Any  # a JudgeExtractor of the image domain
    inception: Any  # an InceptionExtractor, or None
    ref: References
    train: Split
    test: Split
    device: torch.device


def score_sample_file(s: ScoringContext, variant: str, samples_path: Path
                      ) -> tuple[dict, dict[str, np.ndarray]]:
    """Every metric of the first N images of `samples_path`, and the file's arrays. The images
    are checked first: uint8 pixels of the training images' shape (float samples in [-1, 1]
    would be scored as near-black pixels, silently)."""
    arrays = read_npz(samples_path, f"ganlab sample {variant}")
    samples = check_samples(samples_path, arrays, tuple(s.train.images.shape[1:]), variant)
    if len(samples) < s.ref.n:
        raise GanlabError(f"{samples_path}: {len(samples)} samples, fewer than N={s.ref.n} "
                          f"(rerun `ganlab sample {variant}`)")
    metrics = score_all_extractors(s.params, s.judge, s.inception, samples[: s.ref.n], s.ref, variant)
    return metrics, arrays
