"""Tracked runs as the API uses them: open, take rows, finish, keep an uploaded model; each call committed."""
from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from fitboard.app.core.artifacts import ArtifactStore
from fitboard.app.core.tracked import TrackedBatch, TrackedFinish, TrackedOpen, parse
from fitboard.app.store import tracked as store
from fitboard.app.store.models import Run

UPLOAD_KIND = "uploaded_model"


def open_run(session: Session, data: dict) -> Run:
    """Validate the opening facts (422 names the field) and add a running tracked run."""
    run = store.open_tracked(session, parse(TrackedOpen, data))
    session.commit()
    return run


def add_rows(session: Session, run_id: int, data: dict) -> Run:
    """Fold one batch of stages, epoch rows, curves and progress into a running tracked run."""
    run = store.record_batch(session, run_id, parse(TrackedBatch, data))
    session.commit()
    return run


def finish(session: Session, run_id: int, data: dict) -> Run:
    """End a running tracked run with its status and final metrics."""
    run = store.finish_tracked(session, run_id, parse(TrackedFinish, data))
    session.commit()
    return run


def check_uploadable(session: Session, run_id: int) -> None:
    """RunNotFound, or a 409 when the run is not tracked or has finished: its model upload is refused."""
    store.running_tracked(session, run_id)


def keep_model(session: Session, files: ArtifactStore, run_id: int, path: Path) -> int:
    """Store an uploaded learn.export file for a tracked run; its size. It is never unpickled by fitboard
    (unpickling a file someone uploaded runs their code): only downloaded back."""
    store.record_upload(session, run_id, UPLOAD_KIND, 0)  # refuses an unknown or queued run before the copy
    size = files.put(run_id, UPLOAD_KIND, path, move=True)
    store.record_upload(session, run_id, UPLOAD_KIND, size)
    session.commit()
    return size


def fail_silent(session: Session, lost_after: float) -> list[int]:
    """Fail tracked runs silent for lost_after seconds, committed; their ids."""
    ids = store.fail_silent_tracked(session, lost_after)
    session.commit()
    return ids
