"""Ablation statistics, checked against scipy on fixed numbers."""
from __future__ import annotations

import pytest
from scipy import stats as sp

from app.core.stats import betainc, paired_difference, summary, t_cdf, t_ppf, verdict


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 30, 120])
@pytest.mark.parametrize("p", [0.025, 0.5, 0.9, 0.975, 0.995])
def test_t_quantiles_match_scipy(df, p):
    assert t_ppf(p, df) == pytest.approx(sp.t.ppf(p, df), rel=1e-7, abs=1e-6)


@pytest.mark.parametrize("t", [-5.0, -1.3, 0.0, 0.7, 2.2, 9.0])
def test_t_cdf_and_betainc_match_scipy(t):
    assert t_cdf(t, 5) == pytest.approx(sp.t.cdf(t, 5), rel=1e-9, abs=1e-12)
    assert betainc(2.5, 0.5, 0.3) == pytest.approx(sp.beta.cdf(0.3, 2.5, 0.5), rel=1e-9)


def test_paired_difference_matches_scipy_interval():
    base = [0.871, 0.880, 0.876, 0.869]
    variant = [0.879, 0.884, 0.874, 0.881]
    got = paired_difference(list(zip(variant, base)))
    diffs = [v - b for v, b in zip(variant, base)]
    low, high = sp.t.interval(0.95, len(diffs) - 1, loc=sp.tmean(diffs), scale=sp.sem(diffs))
    assert got["n"] == 4 and got["mean"] == pytest.approx(sum(diffs) / 4)
    assert (got["low"], got["high"]) == (pytest.approx(low), pytest.approx(high))


def test_summary_and_verdicts():
    s = summary([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(sp.tstd([0.8, 0.9, 1.0]))
    assert summary([0.5])["std"] is None
    noise = verdict("MixUp", {"n": 3, "mean": 0.003, "low": -0.004, "high": 0.010, "level": 0.95})
    assert noise == "MixUp: +0.3 points, 95% CI -0.4 to +1.0 over 3 seeds: not distinguishable from noise"
    assert "better than the base" in verdict("TTA", {"n": 3, "mean": 0.02, "low": 0.01, "high": 0.03, "level": 0.95})
    assert "worse than the base" in verdict("x", {"n": 3, "mean": -0.02, "low": -0.03, "high": -0.01, "level": 0.95})
    assert "add seeds" in verdict("x", paired_difference([(0.9, 0.8)]))
