"""Simulated days on a small fleet: first-in first-out against the fair queue, with the very policy the dispatcher
uses (fitboard.app.core.fairshare.line and decayed_usage).

3 people, 400 runs of mixed lengths, 4 workers, two days:

- **team** (the fleet sized for its day: 4 workers, about 36 GPU-hours of work between 09:00 and 18:00): everyone
  works in single runs all day and launches one big job. Alice a 60-run sweep at 09:15, Carol a 100-trial search at
  11:00 (at most 4 trials queued or running, the next one queued when one ends, as the search driver does), Bob a
  50-run sweep at 13:30.
- **heavy** (overloaded: 54 GPU-hours, the queue runs till late at night): Alice launches a 120-run sweep at 09:00
  on an empty fleet and trickles single runs all day; Bob works in single runs from 09:30 and adds a 40-run sweep at
  14:00; Carol starts a 100-trial search at 11:00 and runs singles in the afternoon.

Whenever a worker frees, the policy picks the next run (FIFO is the same function with fair share off), so the
fleet is equally busy under both. Prints each person's wait (p50, p95, max) and the fleet's idle GPU-hours for one
seed, each person's wait with the fleet to themselves (alone: the floor no policy can beat, since none gives a person
more than every worker), then over --seeds days how often fair share cut each person's p95.

    .venv/bin/python bench/fair_queue.py [--day team|heavy|both] [--seed 7] [--seeds 20] [--half-life 24]
"""
from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fitboard.app.core.fairshare import Spell, Waiting, decayed_usage, line  # noqa: E402

WORKERS = 4
PEOPLE = {1: "alice", 2: "bob", 3: "carol"}
HOUR, MINUTE = 3600.0, 60.0
SEARCH_PARALLEL = 4  # a search's max_parallel: trials queued or running at once


class Day:
    """The submissions of one simulated day: runs that arrive at a set time, and searches that queue their next
    trial only when one of theirs ends."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.runs: list[tuple[float, int, float]] = []  # (submitted at, person, length in seconds)
        self.searches: list[tuple[float, int, list[float]]] = []  # (launched at, person, trial lengths in order)

    def singles(self, person: int, start: float, end: float, n: int, minutes: tuple[int, ...]) -> None:
        """n single runs at random times in [start, end), lengths drawn from `minutes`."""
        for _ in range(n):
            self.runs.append((self.rng.uniform(start, end), person, self.rng.choice(minutes) * MINUTE))

    def sweep(self, person: int, at: float, n: int, minutes: tuple[float, float]) -> None:
        """A sweep: n runs submitted together, of similar lengths."""
        for i in range(n):
            self.runs.append((at + i * 0.5, person, self.rng.uniform(*minutes) * MINUTE))

    def search(self, person: int, at: float, n: int, minutes: tuple[float, float]) -> None:
        """A search of n trials, SEARCH_PARALLEL of them in flight at a time."""
        self.searches.append((at, person, [self.rng.uniform(*minutes) * MINUTE for _ in range(n)]))

    def of(self, person: int) -> "Day":
        """The same day with only this person's work: the fleet to themselves."""
        alone = Day(0)
        alone.runs = [r for r in self.runs if r[1] == person]
        alone.searches = [s for s in self.searches if s[1] == person]
        return alone

    def count(self) -> int:
        return len(self.runs) + sum(len(lengths) for *_, lengths in self.searches)

    def work(self) -> float:
        return sum(length for *_, length in self.runs) + sum(sum(lengths) for *_, lengths in self.searches)


def team_day(seed: int) -> Day:
    """Everyone runs singles all day and one big job; about as much work as 4 workers do from 09:00 to 18:00."""
    d, short = Day(seed), (2, 3, 4, 5, 6, 8, 10, 15)
    d.singles(1, 9 * HOUR, 18 * HOUR, 70, short)
    d.singles(2, 9.5 * HOUR, 18 * HOUR, 70, short)
    d.singles(3, 10 * HOUR, 18 * HOUR, 50, short)
    d.sweep(1, 9.25 * HOUR, 60, (4, 7))
    d.search(3, 11 * HOUR, 100, (3, 5))
    d.sweep(2, 13.5 * HOUR, 50, (4, 7))
    return d


def heavy_day(seed: int) -> Day:
    """One person fills the empty fleet first thing, and the day holds half again what the fleet can do."""
    d, mixed = Day(seed), (3, 5, 8, 10, 12, 15, 20, 30)
    d.sweep(1, 9 * HOUR, 120, (5, 9))
    d.singles(1, 9 * HOUR, 18 * HOUR, 40, mixed)
    d.singles(2, 9.5 * HOUR, 18 * HOUR, 60, mixed)
    d.sweep(2, 14 * HOUR, 40, (4, 8))
    d.search(3, 11 * HOUR, 100, (3, 6))
    d.singles(3, 13 * HOUR, 18 * HOUR, 40, mixed)
    return d


DAYS = {"team": team_day, "heavy": heavy_day}


def simulate(day: Day, mode: str, half_life: float) -> dict:
    """Run the day with the policy in `mode` (off = FIFO); per person the waits, and the fleet's idle seconds."""
    arrivals: list[tuple[float, int, int, float, int | None]] = []  # (at, run id, person, length, search index)
    ids = iter(range(10**9))
    for t, person, length in day.runs:
        heapq.heappush(arrivals, (t, next(ids), person, length, None))
    trials = [deque(lengths) for *_, lengths in day.searches]
    for s, (t, person, _) in enumerate(day.searches):
        for _ in range(min(SEARCH_PARALLEL, len(trials[s]))):
            heapq.heappush(arrivals, (t, next(ids), person, trials[s].popleft(), s))
    waiting: dict[int, Waiting] = {}
    about: dict[int, tuple[float, int | None]] = {}  # run id -> (length, search index)
    spells: list[Spell] = []
    free = [0.0] * WORKERS  # when each worker is free again
    waits: dict[int, list[float]] = {p: [] for p in PEOPLE}
    done: list[float] = []
    first, now = arrivals[0][0], 0.0
    while arrivals or waiting:
        # next event: a worker frees while runs wait, or a run arrives, whichever comes first
        next_arrival = arrivals[0][0] if arrivals else float("inf")
        now = max(now, min(min(free), next_arrival) if waiting else next_arrival)
        while arrivals and arrivals[0][0] <= now:
            t, i, person, length, search = heapq.heappop(arrivals)
            waiting[i] = Waiting(i, "normal", person, 1, t)
            about[i] = (length, search)
        for w in range(WORKERS):
            if free[w] > now or not waiting:
                continue
            usage = decayed_usage(spells, now, half_life, mode)
            charge = statistics.median(done[-20:]) if done else 300.0  # the dispatcher's typical length
            nxt = line(waiting.values(), usage, mode, charge=charge)[0][0]
            del waiting[nxt.id]
            length, search = about.pop(nxt.id)
            waits[nxt.person].append(now - nxt.created)
            free[w] = end = now + length
            spells.append(Spell(nxt.person, 1, now, end))
            done.append(length)
            if search is not None and trials[search]:  # the search driver queues its next trial as this one ends
                heapq.heappush(arrivals, (end, next(ids), nxt.person, trials[search].popleft(), search))
    span = max(free) - first
    return {"waits": waits, "idle": WORKERS * span - day.work(), "makespan": span}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def table(name: str, seed: int, half_life: float) -> None:
    """One day in full: each person's waits under both policies, and the fleet's idle time."""
    day = DAYS[name](seed)
    print(f"{name} day (seed {seed}): {day.count()} runs, {day.work() / HOUR:.1f} GPU-hours of work, {WORKERS} "
          f"workers, half-life {half_life / HOUR:g} h")
    print(f"{'policy':<12} {'person':<6} {'runs':>4} {'p50 wait':>9} {'p95 wait':>9} {'max wait':>9}")
    for label, mode in (("FIFO", "off"), ("fair share", "person")):
        r = simulate(day, mode, half_life)
        for person, who in PEOPLE.items():
            w = r["waits"][person]
            print(f"{label:<12} {who:<6} {len(w):>4} {pct(w, .5) / MINUTE:>7.0f} m {pct(w, .95) / MINUTE:>7.0f} m "
                  f"{max(w) / MINUTE:>7.0f} m")
        print(f"{label:<12} fleet idle {r['idle'] / HOUR:.1f} GPU-hours from the first submit to the last finish "
              f"({r['makespan'] / HOUR:.1f} h)")
    for person, who in PEOPLE.items():  # no policy gives anyone more than the whole fleet: a floor for each person
        w = simulate(day.of(person), "off", half_life)["waits"][person]
        print(f"{'alone':<12} {who:<6} {len(w):>4} {pct(w, .5) / MINUTE:>7.0f} m {pct(w, .95) / MINUTE:>7.0f} m "
              f"{max(w) / MINUTE:>7.0f} m")


def over_seeds(name: str, seeds: int, half_life: float) -> None:
    """How often, over `seeds` days of this kind, fair share cut each person's p95 (and the median ratio)."""
    cut: dict[int, list[float]] = {p: [] for p in PEOPLE}
    idle = []
    for seed in range(1, seeds + 1):
        day = DAYS[name](seed)
        fifo, fair = simulate(day, "off", half_life), simulate(day, "person", half_life)
        for p in PEOPLE:
            cut[p].append(pct(fair["waits"][p], .95) / pct(fifo["waits"][p], .95))
        idle.append(fair["idle"] - fifo["idle"])
    parts = [f"{who} {sum(r < 1 for r in cut[p])}/{seeds} (median p95 ratio {statistics.median(cut[p]):.2f})"
             for p, who in PEOPLE.items()]
    print(f"{name} day over seeds 1-{seeds}, fair share p95 below FIFO's: " + ", ".join(parts)
          + f"; fleet idle fair - FIFO: {min(idle) / HOUR:+.1f} to {max(idle) / HOUR:+.1f} GPU-hours")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--day", choices=(*DAYS, "both"), default="both")
    p.add_argument("--seed", type=int, default=7, help="the day shown in full")
    p.add_argument("--seeds", type=int, default=20, help="days of each kind for the summary (0: none)")
    p.add_argument("--half-life", type=float, default=24.0, help="fair share half-life in hours")
    args = p.parse_args()
    names = list(DAYS) if args.day == "both" else [args.day]
    for name in names:
        table(name, args.seed, args.half_life * HOUR)
        print()
    for name in names if args.seeds else ():
        over_seeds(name, args.seeds, args.half_life * HOUR)


if __name__ == "__main__":
    main()
