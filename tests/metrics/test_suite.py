import json

import numpy as np
import pytest

from ganlab.metrics.suite import compute_all


def test_compute_all_returns_every_key_as_float():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 8))
    gen = rng.normal(size=(200, 8)) + 0.2
    probs = rng.dirichlet(np.ones(10), size=200)
    train, heldout = rng.normal(size=(300, 16)), rng.normal(size=(100, 16))
    out = compute_all(
        gen,
        probs,
        ref,
        None,
        extractor="judge",
        train_pixels=train,
        heldout_pixels=heldout,
        gen_pixels=rng.normal(size=(200, 16)),
        num_classes=10,
        reference_counts=np.full(10, 5),
        kid_subsets=5,
        kid_subset_size=50,
        is_splits=4,
    )
    expected = {
        "n_generated",
        "n_reference",
        "n_prdc_real",
        "fid_judge",
        "kid_judge_mean",
        "kid_judge_std",
        "is_judge_mean",
        "is_judge_std",
        "precision_judge",
        "recall_judge",
        "density_judge",
        "coverage_judge",
        "classes_covered",
        "class_kl_uniform",
        "class_entropy",
        "class_kl_reference",
        "mem_ratio_median",
        "mem_frac_copies",
        "mem_flagged",
        "mem_dist_train_median",
        "mem_dist_heldout_median",
    }
    assert set(out) == expected
    assert all(isinstance(v, float) for v in out.values())
    assert out["n_generated"] == 200.0
    json.loads(json.dumps(out, allow_nan=False))


def test_compute_all_omits_optional_groups_and_rejects_partial_pixels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    out = compute_all(x, None, x, None, extractor="inception", kid_subsets=2)
    assert out["fid_inception"] < 1e-6
    assert out["precision_inception"] == 1.0
    assert not any(k.startswith(("is_", "class", "mem_")) for k in out)
    with pytest.raises(ValueError, match="memorisation"):
        compute_all(x, None, x, None, extractor="inception", gen_pixels=x, kid_subsets=2)
