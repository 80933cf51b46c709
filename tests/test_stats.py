"""Ablation statistics, checked against scipy on fixed numbers."""
from __future__ import annotations

import itertools
import random

import pytest
from scipy import stats as sp

from fitboard.app.core.stats import MIN_SEEDS, TOO_FEW, betainc, paired_difference, summary, t_cdf, t_ppf, verdict


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


def _possible_accuracy_pairs():
    """Every seed-paired list of accuracies from the extremes {0, 0.5, 1} for 3 seeds and {0, 1} for 4, then 2000
    random ones of 3 to 10 seeds (fixed seed): the widest intervals come from the extremes."""
    for values, n in (((0.0, 0.5, 1.0), 3), ((0.0, 1.0), 4)):
        one = list(itertools.product(values, repeat=2))
        yield from (list(c) for c in itertools.product(one, repeat=n))
    rng = random.Random(17)
    for _ in range(2000):
        yield [(rng.random(), rng.random()) for _ in range(rng.randint(MIN_SEEDS, 10))]


def test_a_difference_of_accuracies_is_never_reported_outside_what_is_possible():
    """Property: for any accuracies in [0, 1], the interval stays within [-1, +1] (-100 to +100 points), holds the
    mean, and says clipped exactly when the Student-t interval reached past the bounds."""
    cases = [(pairs, paired_difference(pairs)) for pairs in _possible_accuracy_pairs()]
    for pairs, d in cases:
        assert -1 <= d["low"] <= d["mean"] <= d["high"] <= 1, (pairs, d)
    clipped = 0
    for pairs, d in cases:
        diffs = [v - b for v, b in pairs]
        if len(set(diffs)) > 1:  # a spread: a Student-t interval to check against scipy's
            lo, hi = sp.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / len(diffs), scale=sp.sem(diffs))
            assert d["clipped"] == (lo < -1 or hi > 1), (pairs, d, lo, hi)
            assert (d["low"], d["high"]) == (pytest.approx(max(lo, -1)), pytest.approx(min(hi, 1)))
        clipped += d["clipped"]
        text = verdict("v", d)
        low, high = (float(x) for x in text.split("CI ")[1].split(" (")[0].split(" over")[0].split(" to "))
        assert -100 <= low <= high <= 100 and (("clipped" in text) == d["clipped"]), text
    assert clipped > 100  # the extremes do reach past the bounds: the clipping is exercised, not assumed


def test_fewer_than_3_seeds_give_no_interval_but_say_why():
    # The 2-seed sweep printed "95% CI -89.4 to +101.7 points": 101.7 is not a possible difference.
    two = paired_difference([(0.95, 0.10), (0.20, 0.30)])
    assert two["n"] == 2 and two["low"] is None and two["high"] is None and two["note"] == TOO_FEW
    assert verdict("MixUp", two) == ("MixUp: +37.5 points over 2 seeds: too few seeds for an interval "
                                     "(add seeds: 3 at least to tell it from noise)")
    assert paired_difference([(0.9, 0.8)])["note"] == TOO_FEW
    assert paired_difference([])["note"] is None and paired_difference([])["mean"] is None
    three = paired_difference([(1.0, 0.0), (0.0, 1.0), (1.0, 0.0)])
    assert three["low"] == -1 and three["high"] == pytest.approx(1) and three["clipped"]
    assert "(clipped to what accuracy allows) over 3 seeds" in verdict("x", three)
