import time

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ganlab.metrics.prdc import (
    density_coverage,
    knn_radii,
    nearest_distances,
    prdc,
    precision_recall,
)


def _brute_radii(x, k):
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)  # a point is not its own neighbour
    return np.sort(d, axis=1)[:, k - 1]


def test_chunked_and_unchunked_radii_agree_with_float64_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(123, 17))
    whole = knn_radii(x, k=3, chunk=10_000)
    chunked = knn_radii(x, k=3, chunk=16)  # 8 blocks, ragged last one
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    np.testing.assert_allclose(whole, _brute_radii(x, 3), rtol=1e-4)


def test_radii_exclude_self_even_with_duplicates():
    x = np.array([[0.0], [0.0], [1.0], [3.0]])
    # Point 0's nearest other point is its duplicate at distance 0.
    np.testing.assert_allclose(knn_radii(x, k=1), [0.0, 0.0, 1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(knn_radii(x, k=2), [1.0, 1.0, 1.0, 3.0], atol=1e-6)


def test_nearest_distances_match_reference():
    rng = np.random.default_rng(1)
    q, r = rng.normal(size=(40, 9)), rng.normal(size=(55, 9))
    np.testing.assert_allclose(nearest_distances(q, r, chunk=6), cdist(q, r).min(axis=1), rtol=1e-4)


def test_prdc_matches_brute_force_definitions():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(80, 5)), rng.normal(size=(70, 5)) + 0.3
    k = 4
    r_real, r_fake = _brute_radii(real, k), _brute_radii(fake, k)
    d = cdist(real, fake)
    inside = d <= r_real[:, None]
    expected = {
        "precision": inside.any(axis=0).mean(),
        "recall": (d <= r_fake[None, :]).any(axis=1).mean(),
        "density": inside.sum(axis=0).mean() / k,
        "coverage": (d.min(axis=1) <= r_real).mean(),
    }
    got = prdc(real, fake, k_pr=k, k_dc=k, chunk=9)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name


def test_precision_recall_of_set_with_itself_is_one():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 20))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)
    _, coverage = density_coverage(x, x, k=5)
    assert coverage == 1.0


def test_disjoint_sets_score_zero():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(200, 10))
    fake = rng.normal(size=(200, 10)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)
    assert density_coverage(real, fake) == (0.0, 0.0)


def test_gaussian_sanity_case_matches_naeem_et_al():
    # Naeem et al. 2020 (prdc reference README): real and fake are 10,000
    # draws each from N(0, I) in 1000-D with nearest_k=5 for all four metrics;
    # published values are P 0.4772, R 0.4705, D 1.0555, C 0.9735. The
    # tolerances cover sampling noise between seeds.
    rng = np.random.default_rng(0)
    real = rng.standard_normal((10_000, 1000), dtype=np.float32)
    fake = rng.standard_normal((10_000, 1000), dtype=np.float32)
    start = time.perf_counter()
    got = prdc(real, fake, k_pr=5, k_dc=5)
    elapsed = time.perf_counter() - start
    assert got["precision"] == pytest.approx(0.4772, abs=0.05)
    assert got["recall"] == pytest.approx(0.4705, abs=0.05)
    assert got["density"] == pytest.approx(1.0555, abs=0.1)
    assert got["coverage"] == pytest.approx(0.9735, abs=0.05)
    assert elapsed < 40, f"chunked 10k x 10k prdc took {elapsed:.1f}s"
