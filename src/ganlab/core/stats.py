"""Statistics over training seeds: a mean with its Student-t confidence interval, and
Welch's t-test for whether two variants differ beyond seed noise.

Seeds are few (3 is typical), so the interval uses the t distribution with n - 1 degrees of
freedom, not the normal: for n = 3 its 95% quantile is 4.30, not 1.96. One seed has no
interval (half-width None, shown as "n = 1"); identical values have a zero-width one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LEVEL = 0.95


# The Student-t functions come from scipy.special (stdtrit, stdtr: what scipy.stats.t.ppf / .sf
# evaluate, bit for bit), imported only when an interval or a test is computed: scipy.stats
# costs every stage process ~0.5 s to import, scipy.special ~0.17 s, a one-seed stage nothing.


def mean_ci(values: Sequence[float], level: float = LEVEL) -> dict:
    """{"mean", "ci_low", "ci_high", "half_width", "n", "sd"} of `values` (non-finite values
    are kept: a diverged seed must show, not vanish). half_width is None for n < 2."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("mean_ci: no values")
    mean = math.fsum(xs) / n
    if n < 2 or not all(math.isfinite(x) for x in xs):
        half, sd = None, None
    else:
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
        from scipy.special import stdtrit

        half = float(stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n) if sd > 0 else 0.0
    return {"mean": mean, "n": n, "sd": sd, "half_width": half,
            "ci_low": None if half is None else mean - half,
            "ci_high": None if half is None else mean + half}


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's unequal-variance t-test of mean(a) - mean(b): {"diff", "t", "df", "p"}.
    p is None when either side has fewer than 2 values or a non-finite one (no test
    possible); identical constant samples give p = 1, different constant samples p = 0."""
    xa, xb = [float(v) for v in a], [float(v) for v in b]
    diff = (math.fsum(xa) / len(xa) - math.fsum(xb) / len(xb)) if xa and xb else None
    out = {"diff": diff, "t": None, "df": None, "p": None}
    if len(xa) < 2 or len(xb) < 2 or not all(math.isfinite(x) for x in xa + xb):
        return out
    va = math.fsum((x - math.fsum(xa) / len(xa)) ** 2 for x in xa) / (len(xa) - 1)
    vb = math.fsum((x - math.fsum(xb) / len(xb)) ** 2 for x in xb) / (len(xb) - 1)
    se2 = va / len(xa) + vb / len(xb)
    if se2 == 0:
        out["p"] = 1.0 if diff == 0 else 0.0
        return out
    from scipy.special import stdtr

    t = diff / math.sqrt(se2)
    df = se2 ** 2 / ((va / len(xa)) ** 2 / (len(xa) - 1) + (vb / len(xb)) ** 2 / (len(xb) - 1))
    out.update(t=t, df=df, p=float(2 * stdtr(df, -abs(t))))
    return out


def fmt_ci(ci: dict, spec: str = "{:.1f}") -> str:
    """'12.3 ± 4.5' (n ≥ 2) or '12.3' (one seed)."""
    if ci["half_width"] is None:
        return spec.format(ci["mean"])
    return f"{spec.format(ci['mean'])} ± {spec.format(ci['half_width'])}"


# references every seed shares (ceilings, floors, sample counts): one value, no interval
_SHARED = ("judge_test_accuracy", "judge_uci_test_accuracy", "chance", "n_fid",
           "intra_fid_n_per_class")


def aggregate_seeds(per_seed: dict[int, dict]) -> dict:
    """One seed: its metrics, unchanged. Several: each metric's mean over seeds under its own
    name, `<metric>_ci95` (half-width of the Student-t 95% interval), `n_seeds`, and every
    seed's values under `seeds.<s>` (what the report's Welch tests read)."""
    from ganlab.core.stats import mean_ci

    seeds = list(per_seed)
    if len(seeds) == 1:
        return per_seed[seeds[0]]
    out: dict = {}
    for k, v in per_seed[seeds[0]].items():
        vals = [per_seed[s].get(k) for s in seeds]
        # counts (n_*) are settings of the protocol, not measurements: no interval
        shared = k in _SHARED or k.startswith("n_") or "floor" in k or k.endswith("_untranslated")
        if shared or not all(isinstance(x, int | float) for x in vals):
            out[k] = v
            continue
        ci = mean_ci(vals)
        out[k] = round(ci["mean"], 6)
        out[f"{k}_ci95"] = None if ci["half_width"] is None else round(ci["half_width"], 6)
    out["n_seeds"] = len(seeds)
    out["seeds"] = {str(s): per_seed[s] for s in seeds}
    return out
