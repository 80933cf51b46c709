"""Database tables: registered datasets, runs with their epoch rows, LR-finder curves, artifacts and workers."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from fitboard.app.core.fairshare import PRIORITIES
from fitboard.app.core.status import (
    PREDICTION_STATUSES,
    SEARCH_STATUSES,
    STATUSES,
    PredictionStatus,
    RunStatus,
    SearchStatus,
)

# Named constraints let Alembic's SQLite batch mode find and rebuild them in later revisions.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator):
    """Stores naive UTC (portable across SQLite and Postgres) and always hands back aware UTC datetimes."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


def _when(nullable: bool = True, index: bool = False) -> Any:
    """A UTC timestamp column; created_at-style columns pass nullable=False."""
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


def _json(nullable: bool = True) -> Any:
    """A JSON column (sa.JSON is native on Postgres and TEXT-backed on SQLite)."""
    return sa.Column(sa.JSON(), nullable=nullable)


def _run_fk(ondelete: str = "CASCADE", primary_key: bool = False, nullable: bool = False) -> Any:
    """A column referencing run.id."""
    return sa.Column(sa.Integer(), sa.ForeignKey("run.id", ondelete=ondelete),
                     primary_key=primary_key, nullable=nullable)


RUN_KINDS = ("queued", "tracked")
DEFAULT_PROJECT_ID = 1  # the project `default` (migration 0010 creates it with this id): what existed before projects


def _project_fk(index: bool = True) -> Any:
    """The project that owns a row; rows written without one (old code paths, the CLI) land in `default`. index
    False where composite indexes lead with it (the runs list's)."""
    return sa.Column(sa.Integer(), sa.ForeignKey("project.id"), nullable=False, index=index,
                     server_default=str(DEFAULT_PROJECT_ID))


def _launcher_fk() -> Any:
    """The person who launched a run, sweep or search (None: the local admin, the site token, or before people)."""
    return sa.Column(sa.Integer(), sa.ForeignKey("person.id", ondelete="SET NULL"), nullable=True)


def _priority() -> Any:
    """A run's or sweep's priority: high, normal (default) or low."""
    return sa.Column(sa.String(8), nullable=False, server_default="normal")


class Project(SQLModel, table=True):
    """A team's space: it owns runs, sweeps, searches, datasets, tracked runs and predictions."""

    __tablename__ = "project"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(100), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


# The runs list's indexes: one per order the list offers, each led by project_id and archived (a list is always one
# project's, and always says which runs it wants) and ending with the key's tie-breakers, so a page and its keyset
# cursor are one index range. status and dataset break ties by created_at, so the same index serves "newest with this
# status" and "by status"; status also leads an index per accuracy (the best failed runs have none: a walk of the
# accuracy index would find none). They serve the project's foreign key too (no index of project_id alone).
LIST_INDEXES = {
    "ix_run_list_id": ("project_id", "archived", "id"),
    "ix_run_list_created_at": ("project_id", "archived", "created_at", "id"),
    "ix_run_list_name": ("project_id", "archived", "name", "id"),
    "ix_run_list_finished_at": ("project_id", "archived", "finished_at", "id"),
    "ix_run_list_best_accuracy": ("project_id", "archived", "best_accuracy", "id"),
    "ix_run_list_tta_accuracy": ("project_id", "archived", "tta_accuracy", "id"),
    "ix_run_list_status": ("project_id", "archived", "status", "created_at", "id"),
    "ix_run_list_dataset": ("project_id", "archived", "dataset", "created_at", "id"),
    "ix_run_list_status_best_accuracy": ("project_id", "archived", "status", "best_accuracy", "id"),
    "ix_run_list_status_tta_accuracy": ("project_id", "archived", "status", "tta_accuracy", "id"),
}


class Dataset(SQLModel, table=True):
    """A dataset registered once and referenced by name from recipes."""

    __tablename__ = "dataset"
    # Unique per project: a name another project uses must neither be refused nor tell that it exists.
    __table_args__ = (sa.UniqueConstraint("project_id", "name", name="uq_dataset_project_name"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    project_id: int | None = Field(default=None, sa_column=_project_fk())
    spec: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # inline DatasetSpec as a dict
    report: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # ResolvedDataset.report()
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class Run(SQLModel, table=True):
    """One training run: its recipe, where it is in its lifecycle and what it produced."""

    __tablename__ = "run"
    # AUTOINCREMENT: SQLite never hands a deleted run's id to a new run.
    __table_args__ = (sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status"),
                      sa.CheckConstraint(f"kind IN ({', '.join(repr(k) for k in RUN_KINDS)})", name="kind"),
                      sa.CheckConstraint(f"priority IN ({', '.join(repr(p) for p in PRIORITIES)})", name="priority"),
                      *(sa.Index(name, *cols) for name, cols in LIST_INDEXES.items()),
                      sa.Index("ix_run_waiting", "status", "queue", "published_at"),  # the dispatcher's reads
                      # a queue's line, oldest first, and its last finished runs, newest first (store.dispatch)
                      sa.Index("ix_run_line", "status", "queue", "id"),
                      {"sqlite_autoincrement": True})
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    dataset: str = Field(sa_column=sa.Column(sa.String(500), nullable=False, index=True))
    spec: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # the RunSpec as a dict
    status: str = Field(default=RunStatus.queued.value,
                        sa_column=sa.Column(sa.String(16), nullable=False, index=True))
    cancel_requested: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False, index=True))
    started_at: datetime | None = Field(default=None, sa_column=_when())
    finished_at: datetime | None = Field(default=None, sa_column=_when())
    worker: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))
    attempt: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    traceback: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    result: dict | None = Field(default=None, sa_column=_json())
    progress: dict | None = Field(default=None, sa_column=_json())
    techniques: list = Field(default_factory=list, sa_column=_json(nullable=False))
    best_accuracy: float | None = Field(default=None, sa_column=sa.Column(sa.Float(), nullable=True))
    tta_accuracy: float | None = Field(default=None, sa_column=sa.Column(sa.Float(), nullable=True))
    sweep_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.Integer(), sa.ForeignKey("sweep.id", ondelete="SET NULL"), nullable=True, index=True))
    variant: str | None = Field(default=None, sa_column=sa.Column(sa.String(500), nullable=True))  # sweep variant key
    search_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.Integer(), sa.ForeignKey("search.id", ondelete="SET NULL"), nullable=True, index=True))
    trial_number: int | None = Field(default=None, sa_column=sa.Column(sa.Integer(), nullable=True))  # Optuna's
    # Recovery: when the run's message last went to the broker (NULL: not yet, or it must go again), how often the
    # reconciler re-sent it, the last epoch checkpoint written, where the next attempt resumes, and the attempt
    # number past which a lost worker fails the run instead of requeueing it.
    queue: str = Field(default="fitboard", sa_column=sa.Column(sa.String(200), nullable=False,  # its broker queue
                                                               server_default="fitboard"))
    published_at: datetime | None = Field(default=None, sa_column=_when())
    republish_count: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False, server_default="0"))
    checkpoint: dict | None = Field(default=None, sa_column=_json())  # {"stage", "epoch"} of the last checkpoint
    resume_from: dict | None = Field(default=None, sa_column=_json())  # {"stage", "epoch"} the next attempt starts at
    attempt_limit: int | None = Field(default=None, sa_column=sa.Column(sa.Integer(), nullable=True))
    # What people add to a run: plain-text notes, tags and archived (hidden from the runs list unless asked for). The
    # tags live in run_tag (indexed: the list's tag filter); this ",a,b," copy, written in the same transaction, is
    # what a page of runs shows without a second query.
    notes: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False, server_default=""))
    tags: str = Field(default="", sa_column=sa.Column(sa.String(1000), nullable=False, server_default=""))
    archived: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                             server_default=sa.false()))
    # queued: a worker trains it from its recipe; tracked: trained elsewhere (a notebook's FitboardCallback), its
    # rows arrive over the API, and last_contact_at (its last write) is what says it is still alive.
    kind: str = Field(default="queued", sa_column=sa.Column(sa.String(16), nullable=False, server_default="queued"))
    last_contact_at: datetime | None = Field(default=None, sa_column=_when())
    project_id: int | None = Field(default=None, sa_column=_project_fk(index=False))
    # the person who launched it (None: before people existed, the local admin or the site token)
    launched_by: int | None = Field(default=None, sa_column=_launcher_fk())
    # high, normal or low: the dispatcher starts higher ones first, then shares fairly between people
    priority: str = Field(default="normal", sa_column=_priority())

    @property
    def tag_list(self) -> list[str]:
        """The run's tags in the order they were given."""
        return [t for t in (self.tags or "").split(",") if t]

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish; None until it has finished."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RunTag(SQLModel, table=True):
    """One tag of one run: the runs list finds a project's runs with a tag through (project_id, archived, tag,
    run_id), and counts them from that index alone; project and archived are the run's (copied when the tags are
    written, archived again when the run is archived or unarchived; a run never changes project)."""

    __tablename__ = "run_tag"
    __table_args__ = (sa.Index("ix_run_tag_tag", "project_id", "archived", "tag", "run_id"),)
    run_id: int = Field(sa_column=_run_fk(primary_key=True))
    tag: str = Field(sa_column=sa.Column(sa.String(40), primary_key=True))
    project_id: int = Field(default=DEFAULT_PROJECT_ID, sa_column=sa.Column(
        sa.Integer(), nullable=False, server_default=str(DEFAULT_PROJECT_ID)))
    archived: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                             server_default=sa.false()))


class RunAttempt(SQLModel, table=True):
    """One attempt at a run: which worker, when, where it resumed from and why it ended."""

    __tablename__ = "run_attempt"
    run_id: int = Field(sa_column=_run_fk(primary_key=True))
    attempt: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True))
    worker: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    started_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=_when(index=True))  # the fair share reads recent ones
    # A final status, or "requeued" when the worker was lost or stopped and the run went back to the queue.
    outcome: str | None = Field(default=None, sa_column=sa.Column(sa.String(16), nullable=True))
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    resumed_from: dict | None = Field(default=None, sa_column=_json())


class Lease(SQLModel, table=True):
    """A named lease: lets one process at a time do a fleet-wide chore (the reconciler)."""

    __tablename__ = "lease"
    name: str = Field(sa_column=sa.Column(sa.String(50), primary_key=True))
    holder: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    expires_at: datetime = Field(sa_column=_when(nullable=False))


class Sweep(SQLModel, table=True):
    """An ablation: a base recipe, the fields varied, the seeds; one run per variant and seed."""

    __tablename__ = "sweep"
    __table_args__ = (sa.CheckConstraint("mode IN ('grid', 'one_at_a_time')", name="mode"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    base: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # the base RunSpec as a dict
    vary: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # field path -> values
    mode: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    seeds: list = Field(default_factory=list, sa_column=_json(nullable=False))
    priority: str = Field(default="normal", sa_column=_priority())  # its runs' priority (seeds added later too)
    variants: list = Field(default_factory=list, sa_column=_json(nullable=False))  # [{"key", "label", "overrides"}]
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False, index=True))
    project_id: int | None = Field(default=None, sa_column=_project_fk())
    launched_by: int | None = Field(default=None, sa_column=_launcher_fk())  # its runs inherit it




class Search(SQLModel, table=True):
    """A search: a base recipe, a space and a budget; an Optuna study (same database) whose trials are runs, then a
    verify sweep of the winners and the base over fresh seeds."""

    __tablename__ = "search"
    __table_args__ = (sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in SEARCH_STATUSES)})", name="status"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    base: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # the base RunSpec as a dict
    space: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # field path -> distribution
    options: dict = Field(default_factory=dict, sa_column=_json(nullable=False))  # budget, metric, pruner, verify
    study_name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, unique=True))
    status: str = Field(default=SearchStatus.running.value,
                        sa_column=sa.Column(sa.String(16), nullable=False, index=True))
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))  # why it stopped
    verify_sweep_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.Integer(), sa.ForeignKey("sweep.id", ondelete="SET NULL"), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False, index=True))
    finished_at: datetime | None = Field(default=None, sa_column=_when())
    project_id: int | None = Field(default=None, sa_column=_project_fk())
    launched_by: int | None = Field(default=None, sa_column=_launcher_fk())  # its trials and verify runs inherit it


class EpochRow(SQLModel, table=True):
    """One row of a run's epoch table; the key (run, stage, epoch) makes redelivered rows overwrite, not duplicate."""

    __tablename__ = "epoch"
    run_id: int = Field(sa_column=_run_fk(primary_key=True))
    stage: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True))
    epoch: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True))
    train_loss: float | None = Field(default=None, sa_column=sa.Column(sa.Float(), nullable=True))
    valid_loss: float | None = Field(default=None, sa_column=sa.Column(sa.Float(), nullable=True))
    metrics: dict = Field(default_factory=dict, sa_column=_json(nullable=False))
    seconds: float | None = Field(default=None, sa_column=sa.Column(sa.Float(), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class LRFind(SQLModel, table=True):
    """The LR-finder curve and its suggestion for one stage of a run."""

    __tablename__ = "lr_find"
    run_id: int = Field(sa_column=_run_fk(primary_key=True))
    stage: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True))
    suggestion: float | None = Field(default=None, sa_column=sa.Column(sa.Float(), nullable=True))
    lrs: list = Field(default_factory=list, sa_column=_json(nullable=False))
    losses: list = Field(default_factory=list, sa_column=_json(nullable=False))


class Artifact(SQLModel, table=True):
    """A file a run produced (exported model, predictions CSV), one per kind, kept in the artifact store under the
    run's id and kind (never an absolute path: every host reads the same store)."""

    __tablename__ = "artifact"
    run_id: int = Field(sa_column=_run_fk(primary_key=True))
    kind: str = Field(sa_column=sa.Column(sa.String(50), primary_key=True))
    size: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True))  # bytes


class Worker(SQLModel, table=True):
    """A worker process ("host:pid") and its latest heartbeat."""

    __tablename__ = "worker"
    name: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    host: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    pid: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    gpu: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))
    gpu_memory: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True))  # bytes
    current_run_id: int | None = Field(default=None, sa_column=_run_fk(ondelete="SET NULL", nullable=True))
    started_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    last_seen: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    doctor: dict | None = Field(default=None, sa_column=_json())  # the last `fitboard doctor` report at start-up
    # the broker queue(s) it consumes, comma-separated (None: a worker older than the fair queue)
    queue: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))


class Prediction(SQLModel, table=True):
    """Images sent to a succeeded run's model, and what it said: the web process stores the request, a predictor
    process (which alone imports torch) claims it, writes the top classes per image, and drops the images."""

    __tablename__ = "prediction"
    __table_args__ = (sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in PREDICTION_STATUSES)})",
                                         name="status"),
                      sa.Index("ix_prediction_status_created", "status", "created_at"))
    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer(), primary_key=True))
    run_id: int = Field(sa_column=_run_fk())
    status: str = Field(default=PredictionStatus.queued.value, sa_column=sa.Column(
        sa.String(16), nullable=False, server_default=PredictionStatus.queued.value))
    names: list = Field(default_factory=list, sa_column=_json(nullable=False))  # the uploaded files' names
    images: list | None = Field(default=None, sa_column=_json())  # base64 of each file until a predictor is done
    results: list | None = Field(default=None, sa_column=_json())  # per image: {"name", "top": [{label, probability}]}
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    predictor: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))  # "host:pid"
    loaded_model: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                                  server_default=sa.false()))
    seconds: float | None = Field(default=None, sa_column=sa.Column(sa.Float(), nullable=True))  # predictor's time
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    claimed_at: datetime | None = Field(default=None, sa_column=_when())
    finished_at: datetime | None = Field(default=None, sa_column=_when())
    project_id: int | None = Field(default=None, sa_column=_project_fk())


# People, tokens, memberships and the audit log live in their own module; imported here so every table is on
# SQLModel.metadata whenever the models are (run.launched_by refers to person.id).
from fitboard.app.store import people_models  # noqa: E402,F401,I001
from fitboard.app.store import ownership  # noqa: E402,F401,I001  (stamps new rows with their project; see there)
