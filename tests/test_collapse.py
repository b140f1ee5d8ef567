"""The collapse detector and the diversity signal (ganlab.collapse)."""

from __future__ import annotations

import math

import pytest
import torch

from ganlab.core.collapse import CollapseDetector, diversity_signal, mean_pairwise_distance
from ganlab.data.toy import ring_centers, sample_mixture


def test_fires_after_exactly_patience_low_checks_and_resets_on_a_high_one() -> None:
    det = CollapseDetector(threshold=0.5, patience=3)
    assert [det.update(s, 0.1) for s in (1, 2)] == [False, False]
    assert det.update(3, 0.1) is True  # the third low check in a row
    assert det.update(4, 0.2) is True  # still collapsed while it stays low
    assert det.warnings == 1  # one episode, not one per low check
    assert det.update(5, 0.9) is False and det.streak == 0
    assert [det.update(s, 0.1) for s in (6, 7)] == [False, False]  # counting starts over
    assert det.update(8, 0.1) is True and det.warnings == 2


def test_threshold_itself_is_not_low() -> None:
    det = CollapseDetector(threshold=0.5, patience=1)
    assert det.update(0, 0.5) is False
    assert det.update(1, 0.4999) is True


def test_best_is_the_highest_signal_and_min_is_tracked() -> None:
    det = CollapseDetector(threshold=0.5, patience=2)
    for step, sig in [(10, 0.3), (20, 0.8), (30, 0.6), (40, 0.1)]:
        det.update(step, sig)
    assert (det.best_step, det.best_signal) == (20, 0.8)
    assert det.min_signal == 0.1
    assert det.history == [(10, 0.3), (20, 0.8), (30, 0.6), (40, 0.1)]


def test_improved_flags_a_new_best_only() -> None:
    det = CollapseDetector(threshold=0.5, patience=2)
    flags = []
    for sig in (0.3, 0.8, 0.6, 0.9):
        det.update(0, sig)
        flags.append(det.improved)
    assert flags == [True, True, False, True]


def test_min_mode_flips_both_directions() -> None:
    det = CollapseDetector(threshold=1.0, patience=2, mode="min")
    assert det.update(0, 2.0) is False
    assert det.update(1, 3.0) is True
    det.update(2, 0.5)
    assert det.best_signal == 0.5 and det.streak == 0


def test_nan_counts_as_collapsed_and_is_never_best() -> None:
    det = CollapseDetector(threshold=0.5, patience=2)
    det.update(0, 0.7)
    assert det.update(1, math.nan) is False
    assert det.update(2, math.nan) is True
    assert det.best_signal == 0.7 and det.min_signal == 0.7


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        CollapseDetector(0.5, 3, mode="up")
    with pytest.raises(ValueError, match="patience"):
        CollapseDetector(0.5, 0)


def test_diversity_of_identical_samples_is_zero() -> None:
    real = sample_mixture(ring_centers(), 0.01, 400, torch.Generator().manual_seed(0))
    same = torch.tensor([[0.3, -0.2]]).repeat(64, 1)
    assert diversity_signal(same, real) == 0.0


def test_diversity_of_real_data_is_one() -> None:
    gen = torch.Generator().manual_seed(1)
    real = sample_mixture(ring_centers(), 0.01, 1000, gen)
    assert diversity_signal(real, real) == pytest.approx(1.0)
    # a fresh, smaller draw of the same law: the pairwise mean does not depend on n
    other = sample_mixture(ring_centers(), 0.01, 300, gen)
    assert diversity_signal(other, real) == pytest.approx(1.0, abs=0.05)


def test_diversity_of_one_ring_mode_is_far_below_one() -> None:
    gen = torch.Generator().manual_seed(2)
    real = sample_mixture(ring_centers(), 0.01, 500, gen)
    one_mode = sample_mixture(ring_centers()[:1], 0.01, 500, gen)
    assert diversity_signal(one_mode, real) < 0.05


def test_precomputed_reference_and_pairwise_mean_by_hand() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    assert mean_pairwise_distance(x) == pytest.approx((5.0 + 4.0 + 3.0) / 3)
    assert diversity_signal(x, 2.0) == pytest.approx(2.0)
    assert diversity_signal(x, mean_pairwise_distance(x)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_distance(x[:1])
    with pytest.raises(ValueError, match="> 0"):
        diversity_signal(x, 0.0)
