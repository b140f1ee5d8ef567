import numpy as np
import pytest
import scipy.linalg

from ganlab.metrics.fid import fid, frechet_distance, gaussian_stats


def _closed_form_diag(mu1, d1, mu2, d2):
    # Commuting diagonal covariances: (S1 S2)^{1/2} = diag(sqrt(d1 d2)).
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(d1 + d2 - 2.0 * np.sqrt(d1 * d2)))


def test_diagonal_covariances_match_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    d1, d2 = rng.uniform(0.1, 3.0, size=16), rng.uniform(0.1, 3.0, size=16)
    got = frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2))
    assert got == pytest.approx(_closed_form_diag(mu1, d1, mu2, d2), rel=1e-6)


def test_rotated_commuting_covariances_match_closed_form():
    # S_i = Q D_i Q^T share eigenvectors, so Tr (S1 S2)^{1/2} = sum sqrt(d1 d2)
    # even though neither matrix is diagonal.
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    d1, d2 = rng.uniform(0.5, 2.0, size=12), rng.uniform(0.5, 2.0, size=12)
    mu1, mu2 = np.zeros(12), np.full(12, 0.3)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(_closed_form_diag(mu1, d1, mu2, d2), rel=1e-6)


def test_non_commuting_2x2_matches_trace_identity():
    # For a 2x2 matrix M with non-negative eigenvalues,
    # Tr sqrt(M) = sqrt(Tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[1.5, -0.4], [-0.4, 0.8]])
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2.0 * np.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([0.0, 1.0]), np.array([0.5, -0.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_non_commuting_high_dim_matches_scipy_sqrtm():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 20)), rng.normal(size=(20, 20))
    s1, s2 = a @ a.T + 0.1 * np.eye(20), b @ b.T + 0.1 * np.eye(20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_fid_of_set_with_itself_is_zero_even_when_rank_deficient():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 64))  # fewer samples than dims: singular covariance
    assert abs(fid(x, x)) < 1e-6
    y = rng.normal(size=(500, 16))
    assert abs(fid(y, y)) < 1e-6


def test_fid_detects_mean_shift():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 8))
    y = rng.normal(size=(2000, 8)) + 1.0
    # Population value is ||shift||² = 8; sampling noise is small at N=2000.
    assert fid(x, y) == pytest.approx(8.0, rel=0.1)


def test_gaussian_stats_shapes_and_validation():
    mu, sigma = gaussian_stats(np.arange(10.0).reshape(5, 2))
    assert mu.shape == (2,) and sigma.shape == (2, 2)
    with pytest.raises(ValueError):
        gaussian_stats(np.zeros((1, 3)))
