"""Issue 10, defect 1 and the PRDC risk: the floor and every variant are scored on the same N
images, evaluate refuses a floor scored on another N, and PRDC compares equal counts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ganlab.data.images import Split, save_split
from ganlab.metrics.prdc import prdc
from ganlab.metrics.suite import compute_all
from ganlab.nets.judge import Judge
from ganlab.util import GanlabError


def _split(n, seed):
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), np.arange(n) % 10)


def _params(tiny_params, n_eval, n_sample):
    ev = dataclasses.replace(tiny_params.evaluate, n_samples=n_eval, kid_subsets=2,
                             kid_subset_size=10, is_splits=2, k_pr=2, k_dc=2)
    sp = dataclasses.replace(tiny_params.sample, n_samples=n_sample)
    return dataclasses.replace(tiny_params, evaluate=ev, sample=sp)


@pytest.mark.parametrize("n_eval,n_sample,n_test,expected", [
    (30, 40, 60, 30),  # evaluate.n_samples binds
    (40, 25, 60, 25),  # sample.n_samples binds
    (80, 90, 50, 50),  # the held-out count binds
])
def test_floor_is_scored_on_the_variants_sample_count(tiny_params, tmp_path, n_eval, n_sample,
                                                      n_test, expected):
    from ganlab.stages.floor import real_floor

    params = _params(tiny_params, n_eval, n_sample)
    save_split(tmp_path / "train.npz", _split(70, 0))
    save_split(tmp_path / "test.npz", _split(n_test, 1))
    torch.manual_seed(0)
    floor = real_floor(params, Judge(), None, tmp_path, torch.device("cpu"))
    assert floor["n_generated"] == expected
    assert floor["n_compared"] == expected
    json.dumps(floor, allow_nan=False)


def test_evaluate_refuses_a_floor_scored_on_another_n(tiny_params, in_tmp):
    from ganlab.stages.evaluate import run_evaluate

    params = _params(tiny_params, 30, 40)
    data = Path("data/prepared")
    save_split(data / "train.npz", _split(70, 0))
    save_split(data / "test.npz", _split(60, 1))
    (Path("samples/gan")).mkdir(parents=True)
    np.savez(Path("samples/gan/samples.npz"), images=_split(40, 2).images)
    Path("models/variants/gan").mkdir(parents=True)
    Path("models/variants/gan/mlflow_run.json").write_text('{"run_id": "x"}')
    Path("metrics").mkdir()
    Path("metrics/floor.json").write_text(json.dumps({"fid_judge": 1.0, "n_compared": 60}))
    with pytest.raises(GanlabError) as e:
        run_evaluate(params, "gan", data_dir=data)
    msg = str(e.value)
    assert "\n" not in msg
    assert "metrics/floor.json" in msg and "metrics/eval/gan.json" in msg
    assert "N=60" in msg and "N=30" in msg
    assert not Path("metrics/eval").exists()  # refused before any work


def test_prdc_compares_equal_counts_with_a_seeded_real_subset():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 6))
    gen = rng.normal(size=(100, 6)) + 0.3
    out = compute_all(gen, None, ref, None, extractor="judge", kid_subsets=2,
                      kid_subset_size=50, seed=1, prdc_seed=7)
    assert out["n_prdc_real"] == 100 and out["n_reference"] == 400
    keep = np.sort(np.random.default_rng(7).choice(400, 100, replace=False))
    expected = prdc(ref[keep], gen, k_pr=3, k_dc=5)
    for name in ("precision", "recall", "density", "coverage"):
        assert out[f"{name}_judge"] == pytest.approx(expected[name])
    # the same prdc_seed meets the same real subset whatever the KID seed
    again = compute_all(gen, None, ref, None, extractor="judge", kid_subsets=2,
                        kid_subset_size=50, seed=2, prdc_seed=7)
    assert again["coverage_judge"] == out["coverage_judge"]
