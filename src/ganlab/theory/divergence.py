"""Divergences between 1-D densities on a grid, for the divergence lab (ganlab.theory).

Densities are given as callables or as values already evaluated on the grid; every integral
is a trapezoid rule on that grid, with the 0 log 0 = 0 convention.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.integrate import trapezoid
from scipy.special import rel_entr, xlogy

Density = Callable[[np.ndarray], np.ndarray] | np.ndarray
LOG2 = math.log(2.0)


def gaussian_pdf(x: np.ndarray | float, mu: float = 0.0, sigma: float = 1.0) -> np.ndarray:
    """Density of N(mu, sigma^2) at x (float64)."""
    u = (np.asarray(x, dtype=np.float64) - mu) / sigma
    return np.exp(-0.5 * u * u) / (sigma * math.sqrt(2.0 * math.pi))


def _on_grid(f: Density, grid: np.ndarray) -> np.ndarray:
    # Densities may be given as callables or as values already evaluated on `grid`.
    return np.asarray(f(grid) if callable(f) else f, dtype=np.float64)


def optimal_discriminator(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """D*(x) = p(x) / (p(x) + q(x)) from density values (Goodfellow et al., 2014, Prop. 1).

    Where both densities are 0, V does not depend on D; 0.5 is returned there.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    s = p + q
    return np.divide(p, s, out=np.full_like(s, 0.5), where=s > 0)


def value_function(
    p: Density, q: Density, d: np.ndarray, grid: np.ndarray, one_minus_d: np.ndarray | None = None
) -> float:
    """V(D) = integral of p log D + q log(1 - D) over `grid` (trapezoid), 0 log 0 = 0.

    `one_minus_d` may be passed when 1 - D is known more precisely than by subtraction
    (e.g. sigmoid(-logit) where D rounds to 1).
    """
    pv, qv = _on_grid(p, grid), _on_grid(q, grid)
    omd = 1.0 - np.asarray(d) if one_minus_d is None else one_minus_d
    return float(trapezoid(xlogy(pv, d) + xlogy(qv, omd), grid))


def value_at_optimum(p: Density, q: Density, grid: np.ndarray) -> float:
    """max_D V: the value function with D* plugged in."""
    pv, qv = _on_grid(p, grid), _on_grid(q, grid)
    return value_function(pv, qv, optimal_discriminator(pv, qv), grid,
                          one_minus_d=optimal_discriminator(qv, pv))


def jsd_numeric(p: Density, q: Density, grid: np.ndarray) -> float:
    """JSD(p || q) = KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2, in nats (<= log 2)."""
    pv, qv = _on_grid(p, grid), _on_grid(q, grid)
    m = 0.5 * (pv + qv)
    # With denormals flushed (torch.set_flush_denormal, which a trainer in the same process
    # turns on) half of a tiny density can become 0 while the density is not: m >= p/2 in
    # exact arithmetic, so such a point contributes ~p log 2 ~ 1e-308, not infinity.
    m = np.where(m > 0, m, np.maximum(pv, qv))
    # rel_entr(a, b) = a log(a/b) with the 0 log 0 = 0 convention.
    return float(trapezoid(0.5 * rel_entr(pv, m) + 0.5 * rel_entr(qv, m), grid))


def kl_numeric(p: Density, q: Density, grid: np.ndarray) -> float:
    """KL(p || q) in nats (0 log 0 = 0; inf where p has mass and q none)."""
    return float(trapezoid(rel_entr(_on_grid(p, grid), _on_grid(q, grid)), grid))


def w1_numeric(cdf_p: Density, cdf_q: Density, grid: np.ndarray) -> float:
    """Wasserstein-1 in 1-D: the integral of |F_p - F_q| (Vallender, 1974)."""
    return float(trapezoid(np.abs(_on_grid(cdf_p, grid) - _on_grid(cdf_q, grid)), grid))


def nonsaturating_terms(p_data: Density, p_g: Density, grid: np.ndarray) -> dict[str, float]:
    """Both sides of the non-saturating identity at D* = p_data / (p_data + p_g), each term
    integrated on its own: lhs = E_{p_g}[-log D*]; rhs = KL(p_g || p_data)
    - 2 JSD(p_data || p_g) + 2 log 2 + E_{p_data}[log D*] (source document 003)."""
    pr, pg = _on_grid(p_data, grid), _on_grid(p_g, grid)
    d_star = optimal_discriminator(pr, pg)
    kl, jsd = kl_numeric(pg, pr, grid), jsd_numeric(pr, pg, grid)
    e_r_log_d = float(trapezoid(xlogy(pr, d_star), grid))
    return {"lhs": float(-trapezoid(xlogy(pg, d_star), grid)), "kl_g_data": kl, "jsd": jsd,
            "e_data_log_dstar": e_r_log_d, "rhs": kl - 2.0 * jsd + 2.0 * LOG2 + e_r_log_d}
