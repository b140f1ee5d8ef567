"""Toy mixtures (ganlab.data.toy) and the mode-coverage scorer (ganlab.metrics.modes)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ganlab.data.toy import (
    TOY_DATASETS,
    grid_centers,
    ring_centers,
    sample_mixture,
    toy_dataset,
)
from ganlab.metrics.modes import plot_points, score_modes

RING = ring_centers(8, 1.0)
GRID = grid_centers(5, 2.0)


# ---------------------------------------------------------------- centres and sampling
def test_ring_has_eight_distinct_evenly_spaced_angles() -> None:
    assert RING.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(RING, axis=1), 1.0)
    angles = np.sort(np.mod(np.arctan2(RING[:, 1], RING[:, 0]), 2 * np.pi))
    assert len(np.unique(np.round(angles, 9))) == 8  # no mode duplicated
    np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 8)
    np.testing.assert_allclose(RING[0], [1.0, 0.0], atol=1e-12)


def test_ring_radius_scales() -> None:
    np.testing.assert_allclose(np.linalg.norm(ring_centers(8, 2.5), axis=1), 2.5)


def test_grid_centers_are_the_25_lattice_points() -> None:
    assert GRID.shape == (25, 2)
    expected = set(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2))
    assert {tuple(map(float, c)) for c in GRID} == expected


def test_sample_mixture_is_deterministic_per_seed() -> None:
    a = sample_mixture(RING, 0.01, 500, torch.Generator().manual_seed(3))
    b = sample_mixture(RING, 0.01, 500, torch.Generator().manual_seed(3))
    c = sample_mixture(RING, 0.01, 500, torch.Generator().manual_seed(4))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("centers,std", [(RING, 0.01), (GRID, 0.05)])
def test_sample_mixture_spread_and_mode_balance(centers: np.ndarray, std: float) -> None:
    n = 20000
    x = sample_mixture(centers, std, n, torch.Generator().manual_seed(0)).double().numpy()
    d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    resid = x - centers[nearest]
    np.testing.assert_allclose(resid.std(axis=0), std, rtol=0.05)
    np.testing.assert_allclose(resid.mean(axis=0), 0.0, atol=0.05 * std)
    counts = np.bincount(nearest, minlength=len(centers))
    expected = n / len(centers)  # uniform mode choice; 6 binomial sigmas of slack
    assert np.all(np.abs(counts - expected) < 6 * math.sqrt(expected))


def test_toy_dataset_defaults_and_overrides() -> None:
    pts, centers, std = toy_dataset("ring8", 100, seed=1)
    assert pts.shape == (100, 2) and std == TOY_DATASETS["ring8"].std == 0.01
    np.testing.assert_allclose(centers, RING)
    pts2, _, _ = toy_dataset("ring8", 100, seed=1)
    assert torch.equal(pts, pts2)
    _, centers, std = toy_dataset("grid25", 10, seed=0)
    assert std == 0.05
    np.testing.assert_allclose(centers, GRID)
    _, centers, std = toy_dataset("ring8", 10, seed=0, radius=2.0, std=0.1)
    assert std == 0.1
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 2.0)


def test_toy_dataset_unknown_name_lists_allowed() -> None:
    with pytest.raises(ValueError, match="ring8") as err:
        toy_dataset("spiral", 10, seed=0)
    assert "grid25" in str(err.value)


# ---------------------------------------------------------------- scorer
def test_score_all_ring_modes() -> None:
    s = score_modes(np.repeat(RING, 5, axis=0), RING, std=0.01)
    assert s == {"modes_covered": 8, "n_modes": 8, "high_quality_frac": 1.0, "kl_uniform": 0.0}


def test_score_single_ring_mode_collapse() -> None:
    s = score_modes(np.tile(RING[3], (40, 1)), RING, std=0.01)
    assert s["modes_covered"] == 1 and s["high_quality_frac"] == 1.0
    assert s["kl_uniform"] == pytest.approx(math.log(8))


def test_score_far_points_are_not_high_quality() -> None:
    far = np.array([[0.0, 0.0], [3.0, 3.0], [0.5, 0.5]])  # ring radius 1, 3 sigma = 0.03
    s = score_modes(far, RING, std=0.01)
    assert s["modes_covered"] == 0 and s["high_quality_frac"] == 0.0
    assert s["kl_uniform"] == pytest.approx(math.log(8))  # documented "no HQ" value


def test_score_ring_mix_counted_by_hand() -> None:
    # threshold 3 * 0.01 = 0.03
    pts = np.array([
        RING[0], RING[0], RING[0],            # 3 HQ on mode 0
        RING[2] + [0.02, 0.0],                # 0.02 away: HQ on mode 2
        RING[4] + [0.0, 0.05],                # 0.05 away: nearest mode 4, not HQ
        [0.0, 0.0],                           # centre of the ring: not HQ
    ])
    s = score_modes(torch.as_tensor(pts), RING, std=0.01)  # tensors are accepted too
    assert s["modes_covered"] == 2
    assert s["high_quality_frac"] == pytest.approx(4 / 6)
    # HQ histogram (3/4, 1/4) on two of 8 modes
    assert s["kl_uniform"] == pytest.approx(0.75 * math.log(6) + 0.25 * math.log(2))


def test_score_grid_all_one_and_mix() -> None:
    assert score_modes(GRID, GRID, std=0.05) == {
        "modes_covered": 25, "n_modes": 25, "high_quality_frac": 1.0, "kl_uniform": 0.0}
    one = score_modes(np.tile(GRID[7], (9, 1)), GRID, std=0.05)
    assert one["modes_covered"] == 1 and one["kl_uniform"] == pytest.approx(math.log(25))
    pts = np.concatenate([
        np.tile([-4.0, -4.0], (10, 1)) + [0.1, 0.0],  # 0.1 < 3 * 0.05: HQ
        np.tile([4.0, 4.0], (10, 1)),
        np.tile([0.5, 0.5], (5, 1)),                  # 0.71 from (0, 0): not HQ
    ])
    s = score_modes(pts, GRID, std=0.05)
    assert s["modes_covered"] == 2 and s["n_modes"] == 25
    assert s["high_quality_frac"] == pytest.approx(20 / 25)
    assert s["kl_uniform"] == pytest.approx(math.log(25 / 2))


def test_n_sigma_widens_the_acceptance() -> None:
    pts = RING[:1] + [0.05, 0.0]
    assert score_modes(pts, RING, std=0.01)["high_quality_frac"] == 0.0
    assert score_modes(pts, RING, std=0.01, n_sigma=6.0)["high_quality_frac"] == 1.0


def test_plot_points_writes_png(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    by_step = {s: sample_mixture(RING, 0.05, 200, gen).numpy() for s in (0, 100, 1000)}
    out = tmp_path / "sub" / "modes.png"
    plot_points(by_step, RING, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["modes.png"]  # no temp file left
