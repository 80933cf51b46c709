"""The queue's policy (fitboard.app.core.fairshare) against values worked out by hand."""
from __future__ import annotations

import math

import pytest

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.fairshare import (
    Spell,
    Waiting,
    check_priority,
    decayed_usage,
    line,
    parse_quotas,
    start_in,
)

ALICE, BOB, CAROL = 1, 2, 3
HOUR = 3600.0


def w(i: int, person: int | None, created: float, priority: str = "normal", project: int = 1) -> Waiting:
    return Waiting(i, priority, person, project, created)


def ids(runs) -> list[int]:
    return [r.id for r in runs]


def test_decayed_usage_is_the_integral_of_the_half_life_weight():
    # One hour that ended one half-life ago: the integral of 2^-(age/H) from age H to 2H is H/ln2 * (1/2 - 1/4).
    h = 10 * HOUR
    usage = decayed_usage([Spell(ALICE, 1, 0.0, HOUR)], now=HOUR + h, half_life=h)
    assert usage[ALICE] == pytest.approx(h / math.log(2) * (2 ** -(h / h) - 2 ** -((h + HOUR) / h)))
    # With a long half-life an hour just ended counts almost fully; a running attempt counts up to now.
    fresh = decayed_usage([Spell(BOB, 1, 0.0, None)], now=HOUR, half_life=1e9)
    assert fresh[BOB] == pytest.approx(HOUR, rel=1e-5)
    # Two hours of work a day ago weigh a quarter-ish of the same two hours just now (half-life 12 h: 2^-2).
    old = decayed_usage([Spell(ALICE, 1, 0.0, 2 * HOUR)], now=26 * HOUR, half_life=12 * HOUR)[ALICE]
    new = decayed_usage([Spell(ALICE, 1, 24 * HOUR, 26 * HOUR)], now=26 * HOUR, half_life=12 * HOUR)[ALICE]
    assert old / new == pytest.approx(0.25)


def test_usage_by_project_and_off():
    spells = [Spell(ALICE, 7, 0.0, 10.0), Spell(BOB, 7, 0.0, 5.0), Spell(CAROL, 8, 0.0, 1.0)]
    by_project = decayed_usage(spells, now=10.0, half_life=1e12, mode="project")
    assert by_project == {7: pytest.approx(15.0), 8: pytest.approx(1.0)}
    assert decayed_usage(spells, now=10.0, half_life=1e12, mode="off") == {None: pytest.approx(16.0)}


def test_fair_share_puts_the_light_user_first_then_interleaves_by_charge():
    # Alice queued six runs before Bob's one; Alice used 100 s lately, Bob nothing.
    alice = [w(i, ALICE, created=i) for i in range(1, 7)]
    bob = [w(7, BOB, created=10)]
    eligible, held = line(alice + bob, usage={ALICE: 100.0}, charge=60.0)
    assert ids(eligible) == [7, 1, 2, 3, 4, 5, 6] and held == []
    # Two heavy queues: each run started charges 60 s, so Bob (40 s behind Alice) gets one run first, then they
    # alternate: B(40->100), tie at 100 goes to the older run (Alice's 1), A(100->160), B(100->160), A, B ...
    bobs = [w(10 + i, BOB, created=20 + i) for i in range(3)]
    eligible, _ = line(alice[:3] + bobs, usage={ALICE: 100.0, BOB: 40.0}, charge=60.0)
    assert ids(eligible) == [10, 1, 11, 2, 12, 3]


def test_priority_goes_before_fair_share_and_age():
    runs = [w(1, ALICE, 1), w(2, ALICE, 2), w(3, BOB, 3, priority="low"), w(4, ALICE, 4, priority="high"),
            w(5, BOB, 5)]
    eligible, _ = line(runs, usage={ALICE: 1000.0, BOB: 0.0}, charge=10.0)
    # high first (Alice's 4, despite her usage); normal: Bob's 5 (least used), then Alice's 1, 2 by age; low last
    assert ids(eligible) == [4, 5, 1, 2, 3]


def test_off_is_priority_then_first_in_first_out():
    runs = [w(3, BOB, 3), w(1, ALICE, 1), w(2, ALICE, 2, priority="low"), w(4, CAROL, 4, priority="high")]
    eligible, _ = line(runs, usage={ALICE: 9e9}, mode="off", charge=60.0)
    assert ids(eligible) == [4, 1, 3, 2]


def test_project_mode_shares_between_projects():
    runs = [w(1, ALICE, 1, project=7), w(2, BOB, 2, project=7), w(3, CAROL, 3, project=8)]
    eligible, _ = line(runs, usage={7: 50.0, 8: 10.0}, mode="project", charge=100.0)
    assert ids(eligible) == [3, 1, 2]  # project 8 used less; then 7's runs by age


def test_a_quota_holds_a_projects_runs_past_its_running_limit():
    runs = [w(1, ALICE, 1, project=7), w(2, ALICE, 2, project=7), w(3, ALICE, 3, project=7), w(4, BOB, 4, project=8)]
    eligible, held = line(runs, usage={}, running={7: 1}, quotas={7: 2}, charge=1.0)
    # project 7 runs one already and may run two: one more of its runs is eligible, the others wait
    assert ids(eligible) == [1, 4] and ids(held) == [2, 3]
    eligible, held = line(runs, usage={}, running={7: 2}, quotas={7: 2})
    assert ids(eligible) == [4] and ids(held) == [1, 2, 3]


def test_start_in_chains_runs_on_the_worker_that_frees_first():
    # two workers free in 100 s and 0 s, runs of 300 s: starts at 0, 100, 300, 400
    assert start_in(4, [100.0, 0.0], 300.0) == [0.0, 100.0, 300.0, 400.0]
    assert start_in(3, [50.0], None) == [50.0, None, None]  # no typical length: only the first can be told
    assert start_in(2, [], 300.0) == [None, None]  # no worker for the queue


def test_parse_quotas_and_priorities():
    assert parse_quotas("vision=2, nlp=4") == {"vision": 2, "nlp": 4} and parse_quotas(None) == {}
    with pytest.raises(ValueError, match="'vision=0'"):
        parse_quotas("vision=0")
    assert check_priority(None) == "normal" and check_priority("high") == "high"
    with pytest.raises(RecipeError) as bad:
        check_priority("urgent")
    assert bad.value.problems == [{"loc": "priority", "msg": "priority is one of high, normal, low; got 'urgent'"}]
