"""Small statistics for ablations: mean, sample std, Student-t quantiles and paired confidence intervals."""
from __future__ import annotations

import math
from functools import lru_cache
from statistics import mean, stdev

_EPS, _TINY = 3e-16, 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=256)  # a report asks for the same few (level, seeds) quantiles over and over
def t_ppf(p: float, df: float) -> float:
    """The t value below which a fraction p lies (bisection on t_cdf; plenty fast for a results table)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def summary(values: list[float]) -> dict:
    """n, mean and sample standard deviation (None where undefined)."""
    n = len(values)
    return {"n": n, "mean": mean(values) if n else None, "std": stdev(values) if n > 1 else None}


MIN_SEEDS = 3  # fewer paired seeds leave 0 or 1 degree of freedom: an interval too wide to read, or none
TOO_FEW = "too few seeds for an interval"


def paired_difference(pairs: list[tuple[float, float]], level: float = 0.95, bounds: tuple[float, float] = (-1, 1),
                      min_n: int = MIN_SEEDS) -> dict:
    """Mean of (variant - base) over seeds run by both, with a Student-t confidence interval.

    Below min_n pairs there is no interval (note says why). The interval is clipped to bounds, what the difference
    can be at all (two accuracies in [0, 1] differ by -1 to +1), and clipped says when it was.
    """
    diffs = [v - b for v, b in pairs]
    n = len(diffs)
    out = {"n": n, "mean": mean(diffs) if n else None, "low": None, "high": None, "level": level, "clipped": False,
           "note": TOO_FEW if 0 < n < min_n else None}
    if n >= max(min_n, 2):
        half = t_ppf(0.5 + level / 2, n - 1) * stdev(diffs) / math.sqrt(n)
        low, high = out["mean"] - half, out["mean"] + half
        out.update(low=max(low, bounds[0]), high=min(high, bounds[1]), clipped=low < bounds[0] or high > bounds[1])
    return out


def verdict(label: str, diff: dict) -> str:
    """A plain-language reading of a paired difference in accuracy points."""
    n = diff["n"]
    if not n:
        return f"{label}: no seed finished for both this variant and the base yet"
    points = diff["mean"] * 100
    if diff["low"] is None:
        return (f"{label}: {points:+.1f} points over {n} seed{'s' if n != 1 else ''}: {TOO_FEW} "
                f"(add seeds: {MIN_SEEDS} at least to tell it from noise)")
    low, high = diff["low"] * 100, diff["high"] * 100
    ci = f"{int(diff['level'] * 100)}% CI {low:+.1f} to {high:+.1f}"
    ci += f" (clipped to what accuracy allows) over {n} seeds" if diff.get("clipped") else f" over {n} seeds"
    if low > 0:
        reading = "better than the base"
    elif high < 0:
        reading = "worse than the base"
    else:
        reading = "not distinguishable from noise"
    return f"{label}: {points:+.1f} points, {ci}: {reading}"
