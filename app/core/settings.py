"""One typed settings object shared by web, worker and CLI (environment prefix FITBOARD_)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fitboard.app.core.fairshare import parse_quotas


class Settings(BaseSettings):
    """Configuration read from FITBOARD_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="FITBOARD_", extra="ignore")

    home: Path = Path("~/.fitboard")
    data_root: Path | None = None
    num_workers: int | None = None  # DataLoader worker processes; None: fastai's default on GPU, 0 on CPU
    # Where run files (models, predictions, checkpoints) live, seen by every host: a directory (a shared mount in a
    # fleet) or s3://bucket/prefix (credentials from the AWS_* variables). Default: $FITBOARD_HOME/artifacts.
    artifact_root: str | None = None
    s3_endpoint_url: str | None = None  # an S3-compatible server (MinIO and the like); default: AWS
    database_url: str | None = None  # default: SQLite at $FITBOARD_HOME/fitboard.db
    broker_url: str | None = None  # default: an embedded broker (SQLite file under $FITBOARD_HOME)
    visibility_timeout: int = 48 * 3600  # Redis redelivers an unacked task after this; longer than any run
    worker_name: str | None = None  # how a worker names itself in the database; default host:pid
    heartbeat_interval: float = 5.0  # seconds between worker heartbeats
    tracked_lost_after: float = 3600.0  # a tracked run (notebook) with no write this long is failed as lost
    worker_lost_after: float = 60.0  # a running run whose worker is silent this long is requeued (or failed)
    republish_after: float = 300.0  # a queued run no worker took for this long is sent to the broker again
    reconcile_interval: float = 10.0  # how often the web process runs the reconciler (workers: every heartbeat)
    # The fair queue (docs/queue.md): whose GPU-seconds are shared fairly (person, project, or off: priority then
    # age), how fast past use is forgotten (its half-life in seconds), the most running runs per project
    # ("vision=2,nlp=4"; unlisted projects: no limit), and the messages sent ahead per idle worker.
    fair_share: Literal["person", "project", "off"] = "person"
    fair_share_half_life: float = Field(24 * 3600.0, gt=0)
    project_quotas: str | None = None
    dispatch_buffer: int = Field(1, ge=0, le=16)
    write_retry_seconds: float = 600.0  # a worker retries a failed epoch-row write this long before failing the run
    retry_backoff_max: float = 30.0  # the longest wait between two tries of a worker's retried write or upload
    max_sweep_runs: int = 256  # variants x seeds of one sweep
    predict_models: int = 4  # learners a predictor keeps loaded (least recently used evicted)
    predict_wait: float = 30.0  # seconds POST .../predict waits for the answer before answering 202 (poll it)
    # A plotly.js bundle to serve at /vendor/plotly.min.js instead of the installed plotly package's: a strict build
    # of the same version (npm's plotly.js-strict-dist-min, plotly-strict.min.js) carries its WebGL code precompiled,
    # so the compare page can draw many runs with WebGL under the pages' CSP (no 'unsafe-eval'); docs/sweeps.md.
    plotly_js: Path | None = None
    api_token: str | None = None  # set: the API needs "Authorization: Bearer <token>", pages need a login
    # Host names this server answers to (comma-separated; "*" for any). Unset: the loopback names, this machine's
    # name and the address `fitboard web --host` binds. Anything else gets 400 (DNS rebinding).
    allowed_hosts: str | None = None
    bind_host: str | None = None  # set by `fitboard web`/`up` from --host, added to the default allowed hosts
    cookie_secure: bool | None = None  # the session cookie's Secure flag; None: set when the request came over https
    # Requests inside the web app at once (each gets a thread and a pooled connection); others wait up to
    # request_wait seconds, at most request_backlog of them, then get 503 with Retry-After.
    max_requests: int = Field(16, ge=1, le=256)
    request_wait: float = Field(3.0, gt=0, le=60)
    request_backlog: int = Field(1024, ge=0, le=100_000)
    # A request body must arrive whole within body_timeout seconds (a streamed model upload: each chunk), read
    # before the request takes one of max_requests; past it, 408 and the connection closed.
    body_timeout: float = Field(30.0, gt=0, le=600)
    max_streams: int = 64  # concurrent server-sent event streams; more get 503 with Retry-After
    stream_lifetime: float = 300.0  # seconds a stream stays open before the client reconnects with Last-Event-ID
    stream_process: bool = True  # `fitboard web` serves event streams from a process of its own (app.web.handoff)
    auth_failures_per_minute: int = 10  # failed logins / wrong bearer tokens per client address before 429
    cache_dir: Path | None = None  # the presize cache (speed: fast); default $FITBOARD_HOME/cache; best on local disk
    cache_max_gb: float = 50.0  # the presize cache's size bound; the least recently used sets are evicted past it
    download_weights: bool = False  # a run missing its pretrained weights downloads them once (else fails at once)
    weights_mirror: str | None = None  # an internal HTTP mirror of torchvision's weight files (air-gapped fleets)

    @field_validator("project_quotas")
    @classmethod
    def _quotas(cls, value: str | None) -> str | None:
        """NAME=N pairs, checked at start-up."""
        parse_quotas(value)
        return value

    @property
    def quotas(self) -> dict[str, int]:
        """project name -> the most running runs it may have."""
        return parse_quotas(self.project_quotas)

    @field_validator("plotly_js", mode="before")
    @classmethod
    def _plotly_file(cls, value):
        """An existing file (~ expanded) or unset (an empty variable counts as unset): a wrong path fails at start,
        not as a page without charts."""
        if value in (None, ""):
            return None
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"FITBOARD_PLOTLY_JS: no file at {path}")
        return path

    @model_validator(mode="after")
    def _resolve_paths(self) -> "Settings":
        """Expand ~, default the data root to $FITBOARD_HOME/datasets; an empty variable counts as unset."""
        self.artifact_root = self.artifact_root or None
        self.s3_endpoint_url = self.s3_endpoint_url or None
        self.home = self.home.expanduser().resolve()
        root = self.data_root if self.data_root is not None else self.home / "datasets"
        self.data_root = root.expanduser().resolve()
        return self

    @property
    def artifact_location(self) -> str:
        """The artifact root as configured, or the default directory under FITBOARD_HOME."""
        return self.artifact_root or str(self.home / "artifacts")

    @property
    def work_dir(self) -> Path:
        """This host's scratch folder for runs in training (their files move to the artifact store when done)."""
        return self.home / "work"

    @property
    def presize_cache_dir(self) -> Path:
        """Where presized copies of dataset images are kept, shared by every run and worker on this host."""
        return (self.cache_dir or self.home / "cache").expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    """Settings for this process, read once from the environment."""
    return Settings()
