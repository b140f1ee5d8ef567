"""The divergence lab (ganlab.theory): numerical helpers and a quick end-to-end run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from ganlab.theory import (
    gaussian_pdf,
    jsd_numeric,
    optimal_discriminator,
    run_theory,
    value_at_optimum,
    value_function,
    w1_numeric,
)

X = np.linspace(-30.0, 40.0, 70001)
LOG2 = math.log(2.0)


def pdf(mu: float, sigma: float = 1.0) -> np.ndarray:
    return gaussian_pdf(X, mu, sigma)


def test_gaussian_pdf_matches_scipy_and_integrates_to_one() -> None:
    np.testing.assert_allclose(gaussian_pdf(X, 1.5, 2.0), norm.pdf(X, 1.5, 2.0), rtol=1e-12)
    assert np.trapezoid(pdf(3.0, 0.5), X) == pytest.approx(1.0, abs=1e-12)


def test_jsd_identical_is_zero() -> None:
    assert abs(jsd_numeric(pdf(0.0), pdf(0.0), X)) < 1e-9
    assert abs(jsd_numeric(lambda x: gaussian_pdf(x, 2.0, 3.0), pdf(2.0, 3.0), X)) < 1e-9


def test_jsd_disjoint_is_log2() -> None:
    assert jsd_numeric(pdf(0.0, 0.1), pdf(20.0, 0.1), X) == pytest.approx(LOG2, abs=1e-6)


def test_jsd_symmetric_and_bounded() -> None:
    p, q = pdf(0.0), pdf(1.0, 2.0)
    a, b = jsd_numeric(p, q, X), jsd_numeric(q, p, X)
    assert a == pytest.approx(b, abs=1e-12)
    assert 0.0 < a < LOG2


@pytest.mark.parametrize(
    "mu_p,s_p,mu_q,s_q", [(0, 1, 0, 1), (0, 1, 2, 1), (0, 1, 1, 3), (-2, 0.5, 5, 2), (0, 1, 25, 1)]
)
def test_value_at_optimum_is_minus_log4_plus_2jsd(mu_p, s_p, mu_q, s_q) -> None:
    p, q = pdf(mu_p, s_p), pdf(mu_q, s_q)
    expected = -math.log(4.0) + 2.0 * jsd_numeric(p, q, X)
    assert value_at_optimum(p, q, X) == pytest.approx(expected, abs=1e-9)


def test_optimal_discriminator_hand_cases() -> None:
    assert optimal_discriminator(3.0, 1.0) == pytest.approx(0.75)
    assert optimal_discriminator(0.0, 0.0) == 0.5  # both densities 0: documented 0.5
    # midpoint of N(0,1) and N(2,1): equal densities
    assert optimal_discriminator(gaussian_pdf(1.0), gaussian_pdf(1.0, 2.0)) == pytest.approx(0.5)
    # log p_data/p_g = 2 - 2x for these two, so p_data = 3 p_g at x = (2 - log 3)/2
    x = (2.0 - math.log(3.0)) / 2.0
    assert optimal_discriminator(gaussian_pdf(x), gaussian_pdf(x, 2.0)) == pytest.approx(0.75)


def test_value_function_of_uninformed_d_is_minus_log4() -> None:
    # D = 1/2 everywhere gives log(1/2) * (1 + 1) whatever p and q are
    v = value_function(pdf(0.0), pdf(3.0, 2.0), np.full_like(X, 0.5), X)
    assert v == pytest.approx(-math.log(4.0), abs=1e-9)
    assert v < value_at_optimum(pdf(0.0), pdf(3.0, 2.0), X)


def test_w1_of_shifted_gaussians_is_the_shift() -> None:
    assert w1_numeric(norm.cdf(X, 0, 1), norm.cdf(X, 7.5, 1), X) == pytest.approx(7.5, abs=1e-8)


# ---------------------------------------------------------------- end to end (quick)
FILES = ["theory.json", "dstar.png", "jsd_vs_w1.png", "generator_gradients.png",
         "dstar.csv", "jsd_w1.csv", "generator_gradients.csv"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("theory")
    return out, run_theory(out, seed=0, quick=True)


def test_run_theory_writes_all_outputs(quick_run) -> None:
    out, metrics = quick_run
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no temp files left
    saved = json.loads((out / "theory.json").read_text())
    assert saved == metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in saved.values())
    headers = {"dstar.csv": ["x", "d_trained", "d_star"], "jsd_w1.csv": ["shift", "jsd", "w1"],
               "generator_gradients.csv": ["d_steps", "saturating", "nonsaturating",
                                           "wasserstein"]}
    for name, header in headers.items():
        rows = list(csv.reader((out / name).open()))
        assert rows[0] == header and len(rows) > 3
    for name in FILES:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_run_theory_trained_d_matches_dstar(quick_run) -> None:
    m = quick_run[1]
    assert m["dstar_max_abs_err"] < 0.1
    assert m["dstar_mean_abs_err"] < 0.02
    # D* maximises V pointwise, so no trained D can beat it
    assert m["v_trained"] <= m["v_optimal"] + 1e-9
    assert m["v_trained"] == pytest.approx(m["v_optimal"], abs=1e-2)


def test_run_theory_divergences(quick_run) -> None:
    m = quick_run[1]
    assert m["identity_max_abs_diff"] < 1e-8
    assert abs(m["jsd_gap_to_log2"]) < 1e-6
    assert abs(m["djsd_dmu_at_max_shift"]) < 1e-6 < 0.5 < m["djsd_dmu_at_one_sigma"]
    assert m["w1_at_max_shift"] == pytest.approx(20.0)
    assert m["w1_numeric_max_abs_err"] < 1e-6
    assert m["w1_slope"] == pytest.approx(1.0, abs=1e-6)


def test_run_theory_generator_gradients(quick_run) -> None:
    m = quick_run[1]
    # saturating loss: gradient vanishes as D improves
    assert m["grad_saturating_final"] < 0.1 * m["grad_saturating_initial"]
    # non-saturating: does not vanish (it grows as D sharpens)
    assert m["grad_nonsaturating_final"] > 0.5 * m["grad_nonsaturating_initial"]
    assert m["grad_nonsaturating_final"] > 100 * m["grad_saturating_final"]
    # Wasserstein (GP) critic: order-one gradient (its optimum has slope 1)
    assert 0.2 < m["grad_wasserstein_final"] < 2.0
