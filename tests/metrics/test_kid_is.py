import numpy as np
import pytest

from ganlab.metrics.inception_score import inception_score
from ganlab.metrics.kid import kid, mmd2_unbiased


def test_kid_identical_sets_near_zero_and_shift_clearly_positive():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 32))
    same_mean, _ = kid(a, a, num_subsets=20, subset_size=100, seed=1)
    shifted_mean, shifted_std = kid(a, a + 0.5, num_subsets=20, subset_size=100, seed=1)
    assert shifted_mean > 0
    assert shifted_mean > 5 * shifted_std
    assert abs(same_mean) < 0.05 * shifted_mean


def test_kid_same_distribution_is_unbiased_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    mean, std = kid(a, b, num_subsets=30, subset_size=100)
    shifted, _ = kid(a, b + 0.5, num_subsets=30, subset_size=100)
    assert abs(mean) < 0.05 * shifted
    assert std >= 0


def test_mmd2_matches_explicit_double_sum():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))

    def k(u, v):
        return (u @ v / 3 + 1.0) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = (xx + yy) / (m * (m - 1)) - 2 * xy / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-10)


def test_mmd2_takes_integer_features():
    x = np.arange(12).reshape(4, 3)
    assert mmd2_unbiased(x, x + 1) == pytest.approx(mmd2_unbiased(x.astype(float), x + 1.0), rel=1e-12)


def test_kid_subset_size_is_clipped():
    rng = np.random.default_rng(3)
    mean, _ = kid(rng.normal(size=(30, 4)), rng.normal(size=(50, 4)), num_subsets=3)
    assert np.isfinite(mean)


@pytest.mark.parametrize("num_classes", [2, 10, 1000])
def test_is_of_uniform_one_hot_equals_num_classes(num_classes):
    splits = 10
    # Every contiguous split is one full copy of eye(C), so each split's
    # marginal is uniform and each KL term is log C.
    probs = np.tile(np.eye(num_classes), (splits, 1))
    mean, std = inception_score(probs, splits=splits)
    assert mean == pytest.approx(num_classes, rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)


def test_is_of_identical_predictions_is_one():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(10))
    mean, _ = inception_score(np.tile(p, (200, 1)), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9)


def test_is_rejects_bad_input():
    with pytest.raises(ValueError):
        inception_score(np.ones((5, 3)) / 3, splits=6)
