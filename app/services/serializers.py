"""Serializers: the JSON shapes of runs, epochs, datasets and workers, shared by the API, the SSE stream, the pages
and the CLI."""
from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from fitboard.app.core.csvsafe import csv_row
from fitboard.app.core.events import EpochEvent
from fitboard.app.core.redact import redact_tree
from fitboard.app.core.status import PredictionStatus, RunStatus, SearchStatus
from fitboard.app.store.models import Dataset, EpochRow, LRFind, Prediction, Run, RunAttempt, Worker
from fitboard.app.store.ownership import owner_names

EPOCH_CSV_COLUMNS = ("stage", "epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "seconds")


def _iso(value) -> str | None:
    """A stored time as ISO 8601 text (already-text values pass)."""
    return value.isoformat() if hasattr(value, "isoformat") else value


IsoTime = Annotated[str | None, BeforeValidator(_iso)]
Listed = Annotated[list[str], BeforeValidator(lambda v: v or [])]


class _With:
    """An object's attributes with some replaced or added: what a model reads with from_attributes."""

    def __init__(self, obj, **extra):
        self._obj, self._extra = obj, extra

    def __getattr__(self, name):
        return self._extra[name] if name in self._extra else getattr(self._obj, name)


class _Out(BaseModel):
    """An API shape, built from a stored row's attributes (the one definition: builders below dump these)."""

    model_config = ConfigDict(from_attributes=True)


# ---- the API's shapes: response models, the OpenAPI document and the builders below all read these ---------
# Free-form documents (a stored recipe, a result, a report) stay objects.

class ErrorOut(_Out):
    """Every error but 422: a sentence saying what went wrong."""

    detail: str


class Problem(_Out):
    """One thing wrong with a request: the field path (e.g. stages[1].lr, or ids) and what is wrong with it."""

    loc: str
    msg: str


class ValidationErrorOut(_Out):
    """422: every problem found, each naming its field."""

    detail: list[Problem]


class Position(_Out):
    """A place in a run's training: stage and epoch, both stored 0-based (people are shown them 1-based)."""

    stage: int
    epoch: int


class RunSummary(_Out):
    """A run as lists show it."""

    id: int
    name: str
    project: str = Field("default", description="the project the run belongs to")
    launched_by: str | None = Field(None, description="the person who launched it (null: the local admin, the site "
                                                      "token, or before accounts existed)")
    status: RunStatus
    dataset: str
    techniques: Listed
    best_accuracy: float | None
    tta_accuracy: float | None
    created_at: IsoTime = Field(description="ISO 8601, UTC")
    started_at: IsoTime
    finished_at: IsoTime
    duration: float | None = Field(description="seconds from start to finish (or to now while running)")
    worker: str | None
    attempt: int
    cancel_requested: bool
    error: str | None
    published_at: IsoTime = Field(description="when its message last went to the broker; null: not sent yet "
                                                  "(the reconciler sends it when the broker answers)")
    republish_count: int = Field(description="how often the reconciler sent it again")
    checkpoint: Position | None = Field(description="the last epoch whose checkpoint is safely written")
    resume_from: Position | None = Field(description="where its next attempt starts (after a lost worker or retry)")
    notes: Annotated[str, BeforeValidator(lambda v: v or "")] = Field(
        description="plain text someone wrote about the run")
    tags: Listed
    archived: Annotated[bool, BeforeValidator(bool)] = Field(description="hidden from the runs list unless asked for")
    sweep_id: int | None = Field(description="the sweep this run belongs to, if any")
    search_id: int | None = Field(None, description="the search this run is a trial of, if any")
    trial_number: int | None = Field(None, description="its Optuna trial number within the search")
    kind: Literal["queued", "tracked"] = Field("queued", description="queued: trained by a worker from its recipe; "
                                               "tracked: trained elsewhere (FitboardCallback), rows sent over the API")
    priority: Literal["high", "normal", "low"] = Field("normal", description="the fair queue starts higher ones first")
    queue: str = Field("fitboard", description="the worker queue it waits in or ran from")
    queue_position: int | None = Field(None, description="while queued: its place in its worker queue's line, 1 = "
                                                         "the next to start (docs/queue.md); null otherwise")
    estimated_start: IsoTime = Field(None, description="while queued: when it should start, from the running runs' "
                                                       "ETAs and the queue's typical run length; null when unknown")


class RunOut(RunSummary):
    """One run in full: its recipe, live progress, result (metrics, tta, best) and traceback."""

    spec: dict[str, Any]
    progress: dict[str, Any] | None
    traceback: str | None
    result: dict[str, Any] | None
    queued_note: str | None = Field(None, description="only with 202: the broker was unreachable; the run is stored "
                                                      "and is sent when the broker is back")


class AttemptOut(_Out):
    """One attempt at a run: its worker, when, where it resumed and how it ended."""

    attempt: int
    worker: str
    started_at: IsoTime
    ended_at: IsoTime
    outcome: str | None = Field(description="succeeded, failed, cancelled, pruned (a search's pruner stopped it), or "
                                            "requeued (worker lost or stopped)")
    reason: str | None
    resumed_from: Position | None


class RunPage(_Out):
    """One page of runs, how many match and the cursors of the pages around it."""

    items: list[RunSummary]
    total: int | None = Field(description="how many runs match, counted up to 10,000; null when more do")
    total_at_least: int = Field(description="a lower bound of the count: total when counted, 10,001 when more match")
    limit: int
    offset: int
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")
    prev_cursor: str | None = Field(description="pass as cursor for the page before; null on the first page")


class CancelOut(_Out):
    """The run's status after the cancel (cancelled when it was queued; running until the worker stops)."""

    id: int
    status: RunStatus
    cancel_requested: Literal[True]


class DeletedOut(_Out):
    """The run that was deleted."""

    id: int
    deleted: Literal[True]


class LRFindOut(_Out):
    """One LR-finder curve and its valley suggestion."""

    stage: int
    suggestion: float | None
    lrs: list[float | None]
    losses: list[float | None]


class DatasetOut(_Out):
    """A registered dataset: its spec and validation report (classes, counts per split, warnings)."""

    name: str
    spec: dict[str, Any]
    report: dict[str, Any]
    created_at: IsoTime


class WorkerOut(_Out):
    """A worker's identity, GPU and last heartbeat."""

    name: str
    host: str
    pid: int
    gpu: str | None
    gpu_memory: int | None = Field(description="bytes")
    current_run_id: int | None
    started_at: IsoTime
    last_seen: IsoTime
    doctor: dict[str, Any] | None = Field(None, description="the `fitboard doctor` report the worker made at start: "
                                          "host, at, ok, counts by status, and each check's name, status, detail, fix")


class QueuedEntry(_Out):
    """A waiting run's place in its queue's line (run_id, name, person and project null for another project's)."""

    position: int = Field(description="1 = the next to start")
    run_id: int | None
    name: str | None
    priority: Literal["high", "normal", "low"]
    person: str | None = Field(description="who launched it (null: the local admin, a token, or hidden)")
    project: str | None
    sent: bool = Field(description="its message is in the broker: a free worker is about to take it")
    held_by_quota: bool = Field(description="its project already runs as many runs as its quota allows")
    estimated_start: IsoTime = Field(description="when it should start; null when unknown")
    waiting_since: IsoTime


class QueueOut(_Out):
    """One worker queue: its live workers and its waiting runs in the order they will start."""

    queue: str
    workers: int = Field(description="live workers consuming this queue")
    idle_workers: int
    waiting: int = Field(description="runs waiting in it (the line lists the first 200)")
    runs: list[QueuedEntry]


class ClassProbability(_Out):
    """One class and the model's probability for it."""

    label: str
    probability: float


class ImagePrediction(_Out):
    """The top classes for one uploaded image, most likely first."""

    name: str
    top: list[ClassProbability]


class PredictionOut(_Out):
    """A prediction request: its status, and per image the top 5 classes once done."""

    id: int
    run_id: int
    status: PredictionStatus
    names: list[str] = Field(description="the uploaded files' names, in order")
    results: list[ImagePrediction] | None
    error: str | None
    loaded_model: bool = Field(description="the predictor loaded the run's model for this request (its first)")
    seconds: float | None = Field(description="the predictor's time for this request")
    note: str | None = Field(description="what is happening while it is not done")
    created_at: IsoTime
    finished_at: IsoTime


class SweepOut(_Out):
    """A sweep's report: each variant's runs, mean and std of accuracy, and its seed-paired difference to base."""

    id: int
    name: str
    mode: str
    seeds: list[int]
    vary: dict[str, Any]
    base: dict[str, Any]
    created_at: IsoTime
    variants: list[dict[str, Any]]
    runs_total: int
    runs_finished: int
    curves: Any


class SweepQueued(SweepOut):
    """The sweep's report and the runs just queued."""

    queued: list[RunSummary]
    queued_note: str | None = Field(None, description="only with 202: the broker was unreachable; the runs are "
                                                      "stored and sent when it is back")


class SearchOut(_Out):
    """A search: its options, each trial, the best so far, the budget used and the verify sweep's verdicts."""

    id: int
    name: str
    status: SearchStatus
    reason: str | None = Field(description="why it stopped, when it failed or was cancelled")
    study_name: str = Field(description="the Optuna study in fitboard's database (optuna.load_study reads it)")
    base: dict[str, Any]
    space: dict[str, Any]
    options: dict[str, Any]
    created_at: str
    finished_at: str | None
    trials: list[dict[str, Any]] = Field(description="number, run_id, status (a run status, or 'asked'), params, "
                                                     "value, epochs, seconds, curve, error, pruned {epoch, rung}")
    counts: dict[str, int] = Field(description="trials by status")
    best: dict[str, Any] | None
    best_so_far: list[dict[str, Any]]
    budget: dict[str, Any]
    verify: dict[str, Any] | None = Field(description="the verify sweep: winners' search metric beside their "
                                                      "verified mean, and verdicts against the base recipe")
    importance: dict[str, float] | None = None


class CompareOut(_Out):
    """Runs side by side: final table with differences to the baseline, curves, recipe diff, confusions."""

    ids: list[int]
    baseline: int
    config_diff: dict[str, dict[str, Any]]
    runs: list[dict[str, Any]]
    disagreements: dict[str, Any] | None


class HealthOut(_Out):
    status: Literal["ok"]


# ---- the builders: a stored row dumped through its model --------------------------------------------------------

def _dump(model: type[_Out], obj, **extra) -> dict:
    """obj's attributes (with extra) as the model's JSON shape."""
    return model.model_validate(_With(obj, **extra)).model_dump(mode="json")


def _run_result(run: Run) -> dict | None:
    """The stored result with its headline parts named, and the error when there is one."""
    if not (run.result or run.error):
        return None
    result = run.result or {}
    return {**result, "metrics": result.get("metrics"), "tta": result.get("tta"), "best": result.get("best"),
            "error": run.error}


# The fields each run shape reads from a Run (the rest, such as queue_position, come from elsewhere or default).
_RUN_FIELDS = {model: tuple(name for name in model.model_fields if hasattr(Run, name))
               for model in (RunSummary, RunOut)}


def _run_values(run: Run, model: type[_Out]) -> dict:
    """The run's values for model's fields: loaded columns straight from the instance's state, the rest (properties,
    expired columns) read as attributes. Reading each of a page's 50 x 30 values through SQLAlchemy's attribute
    machinery (and pydantic's from_attributes) cost more than the page's query: 7.5 ms against 2 ms this way."""
    state = run.__dict__
    return {name: state[name] if name in state else getattr(run, name) for name in _RUN_FIELDS[model]}


def serialize_run(run: Run, full: bool = True, place: dict | None = None) -> dict:
    """A run as the API returns it; full adds spec, progress, result and traceback; place: its queue_position and
    estimated_start while queued (fitboard.app.services.dispatch.places)."""
    place = place or {}
    project, launcher = owner_names(run)
    model = RunOut if full else RunSummary
    values = {**_run_values(run, model), "project": project, "launched_by": launcher,
              "priority": run.priority or "normal", "queue": run.queue or "fitboard",
              "queue_position": place.get("queue_position"), "estimated_start": place.get("estimated_start"),
              "tags": run.tag_list, "kind": run.kind or "queued"}
    if full:
        values["result"] = _run_result(run)
    data = model.model_validate(values).model_dump(mode="json")
    data.pop("queued_note", None)  # said only by the 202 of a submit whose broker was down
    return data


def epoch_event(row: EpochRow) -> EpochEvent:
    """A stored epoch row as the engine's typed epoch event."""
    return EpochEvent(stage=row.stage, epoch=row.epoch, train_loss=row.train_loss, valid_loss=row.valid_loss,
                      metrics=row.metrics or {}, seconds=row.seconds)


def serialize_epoch(row: EpochRow) -> dict:
    """An epoch row in the engine's JSON event shape."""
    return epoch_event(row).to_json()


def epochs_csv(rows: list[EpochRow]) -> str:
    """The epoch table as CSV for people (one line per epoch, metrics as columns; stage and epoch 1-based, as every
    page and the CLI show them; the JSON API keeps the stored 0-based values)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EPOCH_CSV_COLUMNS)
    for r in rows:
        m = r.metrics or {}
        writer.writerow(csv_row([r.stage + 1, r.epoch + 1, r.train_loss, r.valid_loss, m.get("accuracy"),
                                 m.get("error_rate"), r.seconds]))
    return out.getvalue()


def serialize_lr_find(row: LRFind) -> dict:
    """An LR-finder curve with its suggestion."""
    return _dump(LRFindOut, row)


def serialize_attempt(a: RunAttempt) -> dict:
    """One attempt at a run: worker, when, where it resumed and how it ended."""
    return _dump(AttemptOut, a)


def serialize_dataset(ds: Dataset) -> dict:
    """A registered dataset with its validation report."""
    return _dump(DatasetOut, ds)


PREDICTION_NOTES = {PredictionStatus.queued: "waiting for a predictor", PredictionStatus.running: "predicting"}


def serialize_prediction(p: Prediction) -> dict:
    """A prediction request as it stands, with the answer once there is one."""
    note = PREDICTION_NOTES.get(p.status)
    if p.status == PredictionStatus.loading:
        note = (f"loading the model of run {p.run_id} (its first prediction: this takes a few seconds; the next "
                "ones reuse it)")
    return _dump(PredictionOut, p, note=note)


def serialize_worker(w: Worker, run_visible: bool = True) -> dict:
    """A worker's identity, GPU and last heartbeat; its current run only when the caller may see that run."""
    # a report stored by an older worker may hold a credential
    return _dump(WorkerOut, w, doctor=redact_tree(w.doctor), current_run_id=w.current_run_id if run_visible else None)
