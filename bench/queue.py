"""A simulated day on a small fleet: first-in first-out against the fair queue, with the very policy the dispatcher
uses (fitboard.app.core.fairshare.line and decayed_usage).

3 people, 400 runs of mixed lengths, 4 workers. Alice launches a 120-run sweep at 09:00 and trickles single runs
all day; Bob works in single runs from 09:30 and adds a 40-run sweep at 14:00; Carol starts a 100-trial search at
11:00 and runs singles in the afternoon. Whenever a worker frees, the policy picks the next run (FIFO is the same
function with fair share off). Prints each person's wait (p50, p95, max) and the fleet's idle GPU-hours.

    .venv/bin/python bench/queue.py [--seed 7] [--half-life 24]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fitboard.app.core.fairshare import Spell, Waiting, decayed_usage, line  # noqa: E402

WORKERS = 4
PEOPLE = {1: "alice", 2: "bob", 3: "carol"}
HOUR, MINUTE = 3600.0, 60.0


def day(seed: int) -> list[tuple[float, int, float]]:
    """(submitted at, person, length in seconds) of the day's 400 runs."""
    rng = random.Random(seed)
    runs = []

    def single(person: int, start: float, end: float, n: int) -> None:
        for _ in range(n):  # single runs: mostly short, a few long ones
            runs.append((rng.uniform(start, end), person, rng.choice([3, 5, 8, 10, 12, 15, 20, 30]) * MINUTE))

    def batch(person: int, at: float, n: int, minutes: tuple[float, float]) -> None:
        for i in range(n):  # a sweep or search: submitted together, similar lengths
            runs.append((at + i * 0.5, person, rng.uniform(*minutes) * MINUTE))

    batch(1, 9 * HOUR, 120, (5, 9))
    single(1, 9 * HOUR, 18 * HOUR, 40)
    single(2, 9.5 * HOUR, 18 * HOUR, 60)
    batch(2, 14 * HOUR, 40, (4, 8))
    batch(3, 11 * HOUR, 100, (3, 6))
    single(3, 13 * HOUR, 18 * HOUR, 40)
    assert len(runs) == 400
    return sorted(runs)


def simulate(runs: list[tuple[float, int, float]], mode: str, half_life: float) -> dict:
    """Run the day with the policy in `mode` (off = FIFO); per person the waits, and the fleet's idle seconds."""
    arrivals = [(t, i, person, length) for i, (t, person, length) in enumerate(runs)]
    waiting: dict[int, Waiting] = {}
    lengths = {i: length for _, i, _, length in arrivals}
    spells: list[Spell] = []
    free = [0.0] * WORKERS  # when each worker is free again
    waits: dict[int, list[float]] = {p: [] for p in PEOPLE}
    done: list[float] = []
    k, now = 0, 0.0
    while k < len(arrivals) or waiting:
        # next event: a worker frees or a run arrives, whichever comes first
        soonest = min(free)
        if waiting and soonest <= (arrivals[k][0] if k < len(arrivals) else float("inf")):
            now = max(now, soonest)
        elif k < len(arrivals):
            now = arrivals[k][0]
        while k < len(arrivals) and arrivals[k][0] <= now:
            t, i, person, _ = arrivals[k]
            waiting[i] = Waiting(i, "normal", person, 1, t)
            k += 1
        for w in range(WORKERS):
            if free[w] > now or not waiting:
                continue
            usage = decayed_usage(spells, now, half_life, mode)
            charge = statistics.median(done) if done else 300.0
            nxt = line(waiting.values(), usage, mode, charge=charge)[0][0]
            del waiting[nxt.id]
            waits[nxt.person].append(now - nxt.created)
            end = now + lengths[nxt.id]
            spells.append(Spell(nxt.person, 1, now, end))
            done.append(lengths[nxt.id])
            free[w] = end
    span = max(free) - arrivals[0][0]
    return {"waits": waits, "idle": WORKERS * span - sum(lengths.values()), "makespan": span}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--half-life", type=float, default=24.0, help="fair share half-life in hours")
    args = p.parse_args()
    runs = day(args.seed)
    work = sum(length for _, _, length in runs)
    print(f"{len(runs)} runs, {work / HOUR:.1f} GPU-hours of work, {WORKERS} workers, half-life {args.half_life} h")
    print(f"{'policy':<12} {'person':<6} {'runs':>4} {'p50 wait':>9} {'p95 wait':>9} {'max wait':>9}")
    results = {}
    for label, mode in (("FIFO", "off"), ("fair share", "person")):
        r = simulate(runs, mode, args.half_life * HOUR)
        results[label] = r
        for person, name in PEOPLE.items():
            w = r["waits"][person]
            print(f"{label:<12} {name:<6} {len(w):>4} {pct(w, .5) / MINUTE:>7.0f} m {pct(w, .95) / MINUTE:>7.0f} m "
                  f"{max(w) / MINUTE:>7.0f} m")
        print(f"{label:<12} fleet idle {r['idle'] / HOUR:.1f} GPU-hours from the first submit to the last finish "
              f"({r['makespan'] / HOUR:.1f} h)")


if __name__ == "__main__":
    main()
