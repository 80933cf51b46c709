"""The presize cache as a run sees it: the items frame with each stage's paths pointing into the cache."""
from __future__ import annotations

import os
import time

from fitboard.app.core.events import NoteEvent, ProgressEvent
from fitboard.app.core.settings import Settings
from fitboard.worker.presize_cache import CacheSet, CacheTooSmall, PresizeCache
from fitboard.worker.reporters import Reporter
from fitboard.worker.speed import SpeedPlan


class CachedFrames:
    """The items frame with each stage's paths pointing into the presize cache (speed: fast), one set per presize."""

    def __init__(self, frame, plan: SpeedPlan, settings: Settings, reporter: Reporter):
        self.frame, self.plan, self.reporter = frame, plan, reporter
        self.sets: dict[int, CacheSet | None] = {}
        self.cache = PresizeCache(settings.presize_cache_dir, int(settings.cache_max_gb * 2**30),
                                  workers=len(os.sched_getaffinity(0))) if plan.cache else None

    def for_stage(self, idx: int, presize: int):
        """(frame, cached) for a stage: cache entries when the cache is on and holds the set, else the originals."""
        if self.cache is None:
            return self.frame, False
        if presize not in self.sets:
            self.sets[presize] = self._acquire(idx, presize)
        cset = self.sets[presize]
        return (self.frame.assign(path=cset.paths), True) if cset else (self.frame, False)

    def _acquire(self, idx: int, presize: int) -> CacheSet | None:
        """Build or reuse the set, reporting progress; a set too big for the bound falls back with a note."""
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            elapsed = time.perf_counter() - t0
            self.reporter.emit(ProgressEvent(stage=idx, epoch=0, batch=done, total=total, elapsed=elapsed,
                                             eta=elapsed / done * (total - done), phase="presize cache"))
        try:
            return self.cache.acquire(self.frame["path"].tolist(), presize, progress)
        except CacheTooSmall as exc:
            self.reporter.emit(NoteEvent(message=f"presize cache off for presize {presize}: {exc}"))
            return None

    def describe(self) -> str | None:
        """What the cache did for this run, for the speed block."""
        if self.cache is None:
            return None
        return "; ".join(f"presize {p}: {s.describe() if s else 'too big for the bound'}" for p, s in self.sets.items())

    def release(self) -> None:
        """Unpin every set so eviction may take it later."""
        for cset in self.sets.values():
            if cset is not None:
                cset.release()
