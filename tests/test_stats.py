"""Seed statistics: the Student-t interval and Welch's test, against scipy and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ganlab.core.stats import fmt_ci, mean_ci, welch


def test_ci_of_identical_values_is_zero_width():
    ci = mean_ci([7.25, 7.25, 7.25])
    assert ci["mean"] == 7.25 and ci["half_width"] == 0.0
    assert ci["ci_low"] == ci["ci_high"] == 7.25


def test_t_interval_matches_scipy_and_the_textbook_value():
    data = [1.0, 2.0, 3.0, 4.0, 5.0]
    ci = mean_ci(data)
    lo, hi = sps.t.interval(0.95, len(data) - 1, loc=np.mean(data), scale=sps.sem(data))
    assert ci["ci_low"] == pytest.approx(lo, rel=1e-12) and ci["ci_high"] == pytest.approx(hi, rel=1e-12)
    # by hand: s = sqrt(2.5), t(0.975, 4) = 2.776445, half-width = t * s / sqrt(5)
    assert ci["half_width"] == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    rng = np.random.default_rng(3)
    for n in (2, 3, 10):
        x = rng.normal(50, 9, n)
        lo, hi = sps.t.interval(0.95, n - 1, loc=x.mean(), scale=sps.sem(x))
        ci = mean_ci(x)
        assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((lo, hi), rel=1e-10)


def test_one_seed_has_no_interval():
    ci = mean_ci([3.0])
    assert ci["half_width"] is None and fmt_ci(ci) == "3.0"
    assert fmt_ci(mean_ci([1.0, 3.0])).startswith("2.0 ± ")
    with pytest.raises(ValueError):
        mean_ci([])


def test_welch_matches_scipy():
    a, b = [10.0, 12.0, 11.5, 9.0], [20.0, 25.0, 18.0]
    w = welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert w["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert w["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert welch([1.0], [2.0, 3.0])["p"] is None  # one seed: no test
    assert welch([2.0, 2.0], [2.0, 2.0])["p"] == 1.0 and welch([1.0, 1.0], [2.0, 2.0])["p"] == 0.0
    assert welch([1.0, float("nan")], [2.0, 3.0])["p"] is None


def test_counts_are_settings_and_get_no_interval():
    """Issue 21.8: `n_*` counts are the protocol's, the same for every seed: no `_ci95` entry."""
    from ganlab.core.stats import aggregate_seeds

    agg = aggregate_seeds({0: {"fid_judge": 10.0, "n_compared": 500},
                           3: {"fid_judge": 12.0, "n_compared": 500}})
    assert agg["n_compared"] == 500 and "n_compared_ci95" not in agg
    assert agg["fid_judge"] == 11.0 and agg["fid_judge_ci95"] > 0
