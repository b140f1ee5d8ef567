"""Stage `floor`: the real-vs-real floor beside which every variant is read.

Every evaluation metric for N held-out real images (a seeded choice; N as for the variants,
see ganlab.metrics.scoring) against the train split, in the judge's feature space: the best
a generator can be expected to score with this many samples. Apart from judge training so
that a change to `evaluate.*` or `sample.*` rescores the floor without retraining the judge.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganlab.config.params import Params
from ganlab.data.images import load_split
from ganlab.metrics.scoring import References, inception_extractor, score_all_extractors
from ganlab.nets.judge import Judge, JudgeExtractor, load_judge
from ganlab.runtime.paths import FLOOR_PATH, JUDGE_PATH, PREPARED_DIR
from ganlab.util import resolve_device, write_json


def run_floor(params: Params, data_dir: Path = PREPARED_DIR) -> dict:
    """Score the floor with the trained judge; write metrics/floor.json."""
    device = resolve_device(params.device)
    inception = inception_extractor(params, device)  # a bad weights path fails before work
    judge = load_judge(JUDGE_PATH, device=device)
    floor = real_floor(params, judge, inception, data_dir, device)
    write_json(FLOOR_PATH, floor)
    return floor


def real_floor(params: Params, judge: Judge, inception, data_dir: Path,
               device: torch.device) -> dict:
    """Every evaluation metric for N held-out real images (a seeded choice; N as for the
    variants, see ganlab.metrics.scoring) against the train split: the best a generator can be
    expected to score with this many samples in this feature space."""
    ref = References.build(params, load_split(data_dir / "train.npz"),
                           load_split(data_dir / "test.npz"))
    ext = JudgeExtractor(judge, device)
    return score_all_extractors(params, ext, inception, ref.floor_images(), ref, "floor",
                                memorisation_images=ref.floor_memorisation_images())
