"""Prediction requests: stored by the web process, claimed by a predictor process with one conditional UPDATE,
answered, and purged after a while. The database carries them, so no broker is needed and none can lose them."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlmodel import Session

from fitboard.app.core.errors import NotFound
from fitboard.app.core.status import PredictionStatus
from fitboard.app.store.models import Lease, Prediction, utcnow
from fitboard.app.store.runs import get_or_raise, upsert

RECLAIM_AFTER = 120.0  # seconds: a request claimed this long ago by a predictor that never answered is taken again
KEEP_FOR = timedelta(days=1)  # answered requests are kept this long for GET /api/v1/predictions/{id}
PREDICTOR_LEASE = "predictor:"  # + a per-process id: each live predictor keeps one lease row fresh


def record_predictor(session: Session, lease_id: str, holder: str, ttl: float) -> None:
    """Say that a predictor process is alive for the next ttl seconds."""
    upsert(session, Lease, {"name": f"{PREDICTOR_LEASE}{lease_id}", "holder": holder,
                            "expires_at": utcnow() + timedelta(seconds=ttl)}, keys=("name",))


def live_predictors(session: Session) -> list[str]:
    """The predictor processes ("host:pid") whose lease is still running."""
    return list(session.exec(select(Lease.holder).where(Lease.name.startswith(PREDICTOR_LEASE),
                                                        Lease.expires_at > utcnow())).scalars())


def drop_predictor(session: Session, lease_id: str) -> None:
    """A predictor stopping cleanly gives its lease back; expired ones from killed predictors are purged."""
    session.exec(delete(Lease).where(or_(Lease.name == f"{PREDICTOR_LEASE}{lease_id}", (
        Lease.name.startswith(PREDICTOR_LEASE)) & (Lease.expires_at < utcnow() - KEEP_FOR))))


def create_prediction(session: Session, run_id: int, names: list[str], images: list[str]) -> Prediction:
    """Store a request (images as base64) for a predictor to claim."""
    prediction = Prediction(run_id=run_id, names=names, images=images)
    session.add(prediction)
    session.flush()
    return prediction


def get_prediction(session: Session, prediction_id: int) -> Prediction:
    """One request; NotFound when unknown."""
    return get_or_raise(session, Prediction, prediction_id, NotFound(f"prediction {prediction_id}"))


def claim_prediction(session: Session, predictor: str) -> Prediction | None:
    """Take the oldest queued request (or one whose predictor went silent mid-way); None when there is none."""
    stale = utcnow() - timedelta(seconds=RECLAIM_AFTER)
    candidate = session.exec(select(Prediction.id).where(or_(
        Prediction.status == PredictionStatus.queued,
        Prediction.status.in_((PredictionStatus.loading, PredictionStatus.running)) & (Prediction.claimed_at < stale)))
        .order_by(Prediction.created_at).limit(1)).scalars().first()
    if candidate is None:
        return None
    # The conditional UPDATE is the claim: of two predictors, only one sees a row change.
    taken = session.exec(update(Prediction).where(Prediction.id == candidate, or_(
        Prediction.status == PredictionStatus.queued, Prediction.claimed_at < stale))
        .values(status=PredictionStatus.running, predictor=predictor, claimed_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    return session.get(Prediction, candidate) if taken == 1 else None


def mark_loading(session: Session, prediction_id: int) -> None:
    """Say that the predictor is loading the run's model first (the first prediction of a run is slower)."""
    session.exec(update(Prediction).where(Prediction.id == prediction_id).values(status=PredictionStatus.loading,
                                                                                  loaded_model=True)
                 .execution_options(synchronize_session=False))


def finish_prediction(session: Session, prediction_id: int, results: list[dict], seconds: float) -> None:
    """Store the answer and drop the images."""
    session.exec(update(Prediction).where(Prediction.id == prediction_id).values(
        status=PredictionStatus.done, results=results, images=None, seconds=seconds, finished_at=utcnow())
        .execution_options(synchronize_session=False))


def fail_prediction(session: Session, prediction_id: int, error: str) -> None:
    """Store why the request could not be answered and drop the images."""
    unanswered = (Prediction.id == prediction_id) & (Prediction.status != PredictionStatus.done)
    session.exec(update(Prediction).where(unanswered).values(
        status=PredictionStatus.failed, error=error, images=None, finished_at=utcnow())
        .execution_options(synchronize_session=False))


def purge_predictions(session: Session, older_than: timedelta = KEEP_FOR) -> int:
    """Delete requests older than older_than, answered or not; how many."""
    cutoff = utcnow() - older_than
    return session.exec(delete(Prediction).where(Prediction.created_at < cutoff)).rowcount
