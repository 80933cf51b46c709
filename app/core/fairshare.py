"""The queue's policy as a pure function of plain data: which waiting run starts next, and when.

Order: priority first (high, normal, low); within a priority, the share (a person, a project, or nobody when fair
share is off) with the least decayed GPU-seconds goes first, each run it is given charging its expected length to
it; within a share, the oldest run. A project at its quota of running runs waits ("held"). The dispatcher, the
runs' queue_position, the queue page and bench/fair_queue.py all call `line`, so what a run is told is what happens.

Decayed usage of a share at time `now`, over its runs' attempts [start, end) (an open attempt ends now), with
half-life H:   usage = sum over attempts of integral_start^end 2^(-(now - t) / H) dt
             = sum (2^(-(now - end) / H) - 2^(-(now - start) / H)) * H / ln 2
"""
from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Hashable, Iterable

from fitboard.app.core.errors import RecipeError

PRIORITIES = ("high", "normal", "low")
RANK = {p: i for i, p in enumerate(PRIORITIES)}
MODES = ("person", "project", "off")


@dataclass(frozen=True)
class Waiting:
    """A queued run as the policy sees it (created: seconds on any clock, the same for every run)."""

    id: int
    priority: str
    person: int | None
    project: int
    created: float


@dataclass(frozen=True)
class Spell:
    """One attempt's use of a GPU, [start, end); end None while it runs."""

    person: int | None
    project: int
    start: float
    end: float | None = None


def share_of(mode: str, person: int | None, project: int) -> Hashable:
    """Whose share a run counts against: its launcher, its project, or one share for all (off)."""
    return person if mode == "person" else project if mode == "project" else None


def decayed_usage(spells: Iterable[Spell], now: float, half_life: float, mode: str = "person") -> dict:
    """GPU-seconds per share, each second weighted 2^(-age / half_life) (the module docstring's formula)."""
    rate = math.log(2) / half_life
    usage: dict = defaultdict(float)
    for s in spells:
        end = min(now if s.end is None else s.end, now)
        start = min(s.start, end)
        # = (2^(-(now-end)/H) - 2^(-(now-start)/H)) * H/ln2, written with expm1 to stay exact for long half-lives
        usage[share_of(mode, s.person, s.project)] += (math.exp(-rate * (now - end))
                                                      * -math.expm1(-rate * (end - start)) / rate)
    return dict(usage)


def line(waiting: Iterable[Waiting], usage: dict | None = None, mode: str = "person", running: dict | None = None,
         quotas: dict | None = None, charge: float = 0.0) -> tuple[list[Waiting], list[Waiting]]:
    """(eligible in the order they start, held by their project's quota in the same order).

    usage: decayed GPU-seconds per share (decayed_usage); running: running runs per project; quotas: the most
    running runs per project (absent: no limit); charge: the GPU-seconds a started run adds to its share (its
    expected length), so one share's many runs interleave with the others' instead of all going first."""
    used, count, quotas = dict(usage or {}), dict(running or {}), quotas or {}
    groups: dict = defaultdict(deque)  # (rank, share) -> its runs, oldest first
    for w in sorted(waiting, key=lambda w: (w.created, w.id)):
        groups[(RANK.get(w.priority, RANK["normal"]), share_of(mode, w.person, w.project))].append(w)
    eligible, held = [], []
    for rank in sorted({r for r, _ in groups}):
        heap = [(used.get(k, 0.0), q[0].created, q[0].id, k) for (r, k), q in groups.items() if r == rank]
        heapq.heapify(heap)  # ids are unique: the share key itself is never compared
        while heap:
            *_, share = heapq.heappop(heap)
            runs = groups[(rank, share)]
            w = runs.popleft()
            limit = quotas.get(w.project)
            if limit is not None and count.get(w.project, 0) >= limit:
                held.append(w)
            else:
                eligible.append(w)
                count[w.project] = count.get(w.project, 0) + 1
                used[share] = used.get(share, 0.0) + charge
            if runs:
                heapq.heappush(heap, (used.get(share, 0.0), runs[0].created, runs[0].id, share))
    return eligible, held


def start_in(n: int, free_in: list[float], length: float | None) -> list[float | None]:
    """Seconds until each of the first n runs of a line starts: each takes the worker that frees first (free_in:
    seconds until each worker of the queue is free, 0 for an idle one) and holds it `length` seconds; None where
    that cannot be told (no worker, or no typical length to chain on)."""
    heap, out = sorted(free_in), []
    for _ in range(n):
        if not heap:
            out.append(None)
            continue
        t = heapq.heappop(heap)
        out.append(t)
        if length is not None:
            heapq.heappush(heap, t + length)
    return out


def parse_quotas(text: str | None) -> dict[str, int]:
    """FITBOARD_PROJECT_QUOTAS, "vision=2,nlp=4": the most running runs per project name; ValueError naming the bad
    entry."""
    quotas = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, limit = part.partition("=")
        if not name.strip() or not limit.strip().isdecimal() or int(limit) < 1:
            raise ValueError(f"project_quotas: {part!r} is not NAME=N with N a whole number of at least 1")
        quotas[name.strip()] = int(limit)
    return quotas


def check_priority(value, loc: str = "priority") -> str:
    """high, normal or low (None: normal); RecipeError naming the field otherwise."""
    if value is None:
        return "normal"
    if value not in PRIORITIES:
        raise RecipeError.one(loc, f"priority is one of high, normal, low; got {str(value)[:40]!r}")
    return value
