"""Serializers: the JSON shapes of runs, epochs, datasets and workers, shared by the API, the SSE stream, the pages
and the CLI."""
from __future__ import annotations

import csv
import io

from app.core.events import EpochEvent
from app.store.models import Dataset, EpochRow, LRFind, Run, RunAttempt, Worker

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
            "checkpoint": run.checkpoint, "resume_from": run.resume_from}
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
    """The epoch table as CSV (one line per epoch, metrics as columns)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EPOCH_CSV_COLUMNS)
    for r in rows:
        m = r.metrics or {}
        writer.writerow([r.stage, r.epoch, r.train_loss, r.valid_loss, m.get("accuracy"), m.get("error_rate"),
                         r.seconds])
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


def serialize_worker(w: Worker) -> dict:
    """A worker's identity, GPU and last heartbeat."""
    return {"name": w.name, "host": w.host, "pid": w.pid, "gpu": w.gpu, "gpu_memory": w.gpu_memory,
            "current_run_id": w.current_run_id, "started_at": _iso(w.started_at), "last_seen": _iso(w.last_seen)}
