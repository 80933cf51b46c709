"""A run's lifecycle states, spelled once: the database constraint, the API, the CLI and the pages read them here."""
from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its lifecycle: queued -> running -> succeeded | failed | cancelled | pruned
    (pruned: a search trial its pruner stopped early; it did what was asked, not a failure)."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    pruned = "pruned"


LIVE = (RunStatus.queued, RunStatus.running)
FINISHED = (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.pruned)
STATUSES = tuple(s.value for s in RunStatus)
