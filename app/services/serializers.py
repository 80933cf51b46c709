"""Serializers: the JSON shapes of runs, epochs, datasets and workers, shared by the API, the SSE stream, the pages
and the CLI."""
from __future__ import annotations

import csv
import io
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.core.csvsafe import csv_row
from app.core.events import EpochEvent
from app.core.status import RunStatus
from app.store.models import Dataset, EpochRow, LRFind, Prediction, Run, RunAttempt, Worker

EPOCH_CSV_COLUMNS = ("stage", "epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "seconds")


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def serialize_run(run: Run, full: bool = True) -> dict:
    """A run as the API returns it; full adds spec, progress, result and traceback."""
    data = {"id": run.id, "name": run.name, "status": str(run.status), "dataset": run.dataset,
            "techniques": run.techniques or [], "best_accuracy": run.best_accuracy, "tta_accuracy": run.tta_accuracy,
            "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at), "duration": run.duration, "worker": run.worker,
            "attempt": run.attempt, "cancel_requested": run.cancel_requested, "error": run.error,
            "published_at": _iso(run.published_at), "republish_count": run.republish_count,
            "checkpoint": run.checkpoint, "resume_from": run.resume_from, "notes": run.notes or "",
            "tags": run.tag_list, "archived": bool(run.archived), "sweep_id": run.sweep_id,
            "kind": run.kind or "queued"}
    if full:
        result = run.result or {}
        data.update(spec=run.spec, progress=run.progress, traceback=run.traceback,
                    result={**result, "metrics": result.get("metrics"), "tta": result.get("tta"),
                            "best": result.get("best"), "error": run.error} if run.result or run.error else None)
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
    return {"stage": row.stage, "suggestion": row.suggestion, "lrs": row.lrs, "losses": row.losses}


def serialize_attempt(a: RunAttempt) -> dict:
    """One attempt at a run: worker, when, where it resumed and how it ended."""
    return {"attempt": a.attempt, "worker": a.worker, "started_at": _iso(a.started_at), "ended_at": _iso(a.ended_at),
            "outcome": a.outcome, "reason": a.reason, "resumed_from": a.resumed_from}


def serialize_dataset(ds: Dataset) -> dict:
    """A registered dataset with its validation report."""
    return {"name": ds.name, "spec": ds.spec, "report": ds.report, "created_at": _iso(ds.created_at)}


def serialize_prediction(p: Prediction) -> dict:
    """A prediction request as it stands, with the answer once there is one."""
    notes = {"queued": "waiting for a predictor", "loading": f"loading the model of run {p.run_id} (its first "
             "prediction: this takes a few seconds; the next ones reuse it)", "running": "predicting"}
    return {"id": p.id, "run_id": p.run_id, "status": p.status, "names": p.names, "results": p.results,
            "error": p.error, "loaded_model": p.loaded_model, "seconds": p.seconds, "note": notes.get(p.status),
            "created_at": _iso(p.created_at), "finished_at": _iso(p.finished_at)}


def serialize_worker(w: Worker) -> dict:
    """A worker's identity, GPU and last heartbeat."""
    return {"name": w.name, "host": w.host, "pid": w.pid, "gpu": w.gpu, "gpu_memory": w.gpu_memory,
            "current_run_id": w.current_run_id, "started_at": _iso(w.started_at), "last_seen": _iso(w.last_seen),
            "doctor": w.doctor}


# ---- the same shapes as pydantic models: the API's response models and its OpenAPI document -----------------------
# The serialize_* functions above build these dicts without pydantic (they are on the hot paths); the models say
# what they hold. Free-form documents (a stored recipe, a result, a report) stay objects.

class ErrorOut(BaseModel):
    """Every error but 422: a sentence saying what went wrong."""

    detail: str


class Problem(BaseModel):
    """One thing wrong with a request: the field path (e.g. stages[1].lr, or ids) and what is wrong with it."""

    loc: str
    msg: str


class ValidationErrorOut(BaseModel):
    """422: every problem found, each naming its field."""

    detail: list[Problem]


class Position(BaseModel):
    """A place in a run's training: stage and epoch, both stored 0-based (people are shown them 1-based)."""

    stage: int
    epoch: int


class RunSummary(BaseModel):
    """A run as lists show it."""

    id: int
    name: str
    status: RunStatus
    dataset: str
    techniques: list[str]
    best_accuracy: float | None
    tta_accuracy: float | None
    created_at: str | None = Field(description="ISO 8601, UTC")
    started_at: str | None
    finished_at: str | None
    duration: float | None = Field(description="seconds from start to finish (or to now while running)")
    worker: str | None
    attempt: int
    cancel_requested: bool
    error: str | None
    published_at: str | None = Field(description="when its message last went to the broker; null: not sent yet "
                                                  "(the reconciler sends it when the broker answers)")
    republish_count: int = Field(description="how often the reconciler sent it again")
    checkpoint: Position | None = Field(description="the last epoch whose checkpoint is safely written")
    resume_from: Position | None = Field(description="where its next attempt starts (after a lost worker or retry)")
    notes: str = Field(description="plain text someone wrote about the run")
    tags: list[str]
    archived: bool = Field(description="hidden from the runs list unless asked for")
    sweep_id: int | None = Field(description="the sweep this run belongs to, if any")
    kind: Literal["queued", "tracked"] = Field("queued", description="queued: trained by a worker from its recipe; "
                                               "tracked: trained elsewhere (FitboardCallback), rows sent over the API")


class RunOut(RunSummary):
    """One run in full: its recipe, live progress, result (metrics, tta, best) and traceback."""

    spec: dict[str, Any]
    progress: dict[str, Any] | None
    traceback: str | None
    result: dict[str, Any] | None
    queued_note: str | None = Field(None, description="only with 202: the broker was unreachable; the run is stored "
                                                      "and is sent when the broker is back")


class AttemptOut(BaseModel):
    """One attempt at a run: its worker, when, where it resumed and how it ended."""

    attempt: int
    worker: str
    started_at: str | None
    ended_at: str | None
    outcome: str | None = Field(description="succeeded, failed, cancelled, or requeued (worker lost or stopped)")
    reason: str | None
    resumed_from: Position | None


class RunPage(BaseModel):
    """One page of runs and how many match."""

    items: list[RunSummary]
    total: int
    limit: int
    offset: int


class CancelOut(BaseModel):
    """The run's status after the cancel (cancelled when it was queued; running until the worker stops)."""

    id: int
    status: RunStatus
    cancel_requested: Literal[True]


class DeletedOut(BaseModel):
    """The run that was deleted."""

    id: int
    deleted: Literal[True]


class LRFindOut(BaseModel):
    """One LR-finder curve and its valley suggestion."""

    stage: int
    suggestion: float | None
    lrs: list[float | None]
    losses: list[float | None]


class DatasetOut(BaseModel):
    """A registered dataset: its spec and validation report (classes, counts per split, warnings)."""

    name: str
    spec: dict[str, Any]
    report: dict[str, Any]
    created_at: str | None


class WorkerOut(BaseModel):
    """A worker's identity, GPU and last heartbeat."""

    name: str
    host: str
    pid: int
    gpu: str | None
    gpu_memory: int | None = Field(description="bytes")
    current_run_id: int | None
    started_at: str | None
    last_seen: str | None
    doctor: dict[str, Any] | None = Field(None, description="the `fitboard doctor` report the worker made at start: "
                                          "host, at, ok, counts by status, and each check's name, status, detail, fix")


class ClassProbability(BaseModel):
    """One class and the model's probability for it."""

    label: str
    probability: float


class ImagePrediction(BaseModel):
    """The top classes for one uploaded image, most likely first."""

    name: str
    top: list[ClassProbability]


class PredictionOut(BaseModel):
    """A prediction request: its status, and per image the top 5 classes once done."""

    id: int
    run_id: int
    status: Literal["queued", "loading", "running", "done", "failed"]
    names: list[str] = Field(description="the uploaded files' names, in order")
    results: list[ImagePrediction] | None
    error: str | None
    loaded_model: bool = Field(description="the predictor loaded the run's model for this request (its first)")
    seconds: float | None = Field(description="the predictor's time for this request")
    note: str | None = Field(description="what is happening while it is not done")
    created_at: str | None
    finished_at: str | None


class SweepOut(BaseModel):
    """A sweep's report: each variant's runs, mean and std of accuracy, and its seed-paired difference to base."""

    id: int
    name: str
    mode: str
    seeds: list[int]
    vary: dict[str, Any]
    base: dict[str, Any]
    created_at: str
    variants: list[dict[str, Any]]
    runs_total: int
    runs_finished: int
    curves: Any


class SweepQueued(SweepOut):
    """The sweep's report and the runs just queued."""

    queued: list[RunSummary]
    queued_note: str | None = Field(None, description="only with 202: the broker was unreachable; the runs are "
                                                      "stored and sent when it is back")


class CompareOut(BaseModel):
    """Runs side by side: final table with differences to the baseline, curves, recipe diff, confusions."""

    ids: list[int]
    baseline: int
    config_diff: dict[str, dict[str, Any]]
    runs: list[dict[str, Any]]
    disagreements: dict[str, Any] | None


class HealthOut(BaseModel):
    status: Literal["ok"]
