"""A run's, a search's and a prediction's lifecycle states, spelled once: the database constraints, the API, the CLI
and the pages read them here."""
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


class SearchStatus(StrEnum):
    """Where a search is: running -> verifying -> done; or failed / cancelled."""

    running = "running"  # asking its sampler for trials and training them
    verifying = "verifying"  # the budget is spent: the verify sweep trains the winners and the base
    done = "done"  # the verify sweep finished every run
    failed = "failed"  # most trials failed, none completed, or its verify sweep was deleted; the reason says which
    cancelled = "cancelled"  # by its user


SEARCH_ACTIVE = (SearchStatus.running, SearchStatus.verifying)
SEARCH_STATUSES = tuple(s.value for s in SearchStatus)


class PredictionStatus(StrEnum):
    """Where a prediction request is: queued -> loading (its run's model, first time) -> running -> done | failed."""

    queued = "queued"  # stored by the web process; no predictor has claimed it
    loading = "loading"  # a predictor is loading the run's model (the run's first request there)
    running = "running"  # a predictor claimed it and is predicting
    done = "done"  # answered: the top classes per image are stored, the images dropped
    failed = "failed"  # could not be answered; the error says why


PREDICTION_FINISHED = (PredictionStatus.done, PredictionStatus.failed)
PREDICTION_STATUSES = tuple(s.value for s in PredictionStatus)
