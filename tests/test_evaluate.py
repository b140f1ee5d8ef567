"""Evaluation wiring: extractor names in every key, the Inception path from a local file,
and clear errors for a bad weights path."""

import dataclasses

import numpy as np
import pytest
import torch

from ganlab.data.images import Split
from ganlab.metrics.scoring import References, inception_extractor, score_all_extractors
from ganlab.nets.judge import Judge, JudgeExtractor
from ganlab.util import GanlabError


def _split(n, seed):
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), np.arange(n) % 10)


def _params(tiny_params, **evaluate):
    ev = dataclasses.replace(tiny_params.evaluate, kid_subsets=2, kid_subset_size=6,
                             is_splits=2, k_pr=2, k_dc=2, **evaluate)
    return dataclasses.replace(tiny_params, evaluate=ev)


def test_inception_metrics_from_a_local_weights_file(tiny_params, tmp_path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    weights = tmp_path / "inception.pt"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights)
    params = _params(tiny_params, inception_weights=str(weights))
    params = dataclasses.replace(params, sample=dataclasses.replace(params.sample, n_samples=8))
    train, test = _split(12, 0), _split(10, 1)
    judge = JudgeExtractor(Judge(), torch.device("cpu"))
    inc = inception_extractor(params, torch.device("cpu"))
    ref = References.build(params, train, test)
    assert ref.n == 8
    m = score_all_extractors(params, judge, inc, ref.floor_images(), ref, "x",
                             memorisation_images=ref.floor_memorisation_images())
    for name in ("fid", "precision", "recall", "density", "coverage"):
        assert f"{name}_judge" in m and f"{name}_inception" in m
    assert "is_inception_mean" in m and "classes_covered" in m and "mem_ratio_median" in m
    assert not any(k.startswith(("fid_", "kid_")) and "_judge" not in k and "_inception" not in k
                   for k in m)


def test_missing_inception_file_names_the_key(tiny_params, tmp_path):
    params = _params(tiny_params, inception_weights=str(tmp_path / "nope.pt"))
    with pytest.raises(GanlabError, match="evaluate.inception_weights: .*nope.pt"):
        inception_extractor(params, torch.device("cpu"))
    assert inception_extractor(_params(tiny_params), torch.device("cpu")) is None
