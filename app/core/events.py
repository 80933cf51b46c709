"""Typed events of a training run: the engine emits them; reporters, the store, the SSE stream and the API read them.

Field names here are the contract the JS, `fitboard train --json` and the REST API share. Stages and epochs are
0-based, as stored. Every number is finite or null: a diverged loss (NaN) arrives as null everywhere.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from fitboard.app.core.jsonsafe import json_safe


class EngineEvent(BaseModel):
    """Base of every event: strict fields, non-finite floats nulled on the way in."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data):
        """NaN and infinities become None, so JSON readers and Postgres accept every event."""
        return json_safe(data) if isinstance(data, dict) else data

    def to_json(self) -> dict:
        """The event as a plain JSON-ready dict (what `--json`, SSE and the API send)."""
        return self.model_dump(mode="json")


class StartEvent(EngineEvent):
    """The dataset resolved and the device chosen; training is about to begin."""

    event: Literal["start"] = "start"
    name: str
    dataset: dict[str, Any]
    techniques: list[str]
    device: str
    notes: list[str] = []
    resumed_from: dict[str, int] | None = None  # {"stage", "epoch"}: the first epoch this attempt trains


class NoteEvent(EngineEvent):
    """Something the user should know (a fallback, a dataset warning)."""

    event: Literal["note"] = "note"
    message: str


class LRFindEvent(EngineEvent):
    """A stage's LR-finder curve and its suggestion."""

    event: Literal["lr_find"] = "lr_find"
    stage: int
    suggestion: float | None
    method: str = "valley"
    lrs: list[float | None]
    losses: list[float | None]


class StagePlan(EngineEvent):
    """How a stage trains: what the recipe asked, with `lr: find` replaced by the rate found."""

    stage: int
    epochs: int
    size: int
    presize: int
    bs: int
    frozen: bool
    lr: float | list[float]
    mixup: float | None = None


class StageEvent(StagePlan):
    """A stage begins."""

    event: Literal["stage"] = "stage"


class ParamSummary(EngineEvent):
    """Trainable parameters and per-group learning rates after a stage: evidence of freeze and discriminative rates."""

    params: int
    trainable_params: int
    group_lrs: list[float]


class StageEndEvent(ParamSummary):
    """A stage ended."""

    event: Literal["stage_end"] = "stage_end"
    stage: int


class StageSummary(StagePlan, ParamSummary):
    """A finished stage as the result lists it: its plan and its parameter summary."""


class ProgressEvent(EngineEvent):
    """Progress within a phase (at most two events a second); stage, epoch stored 0-based, batch 1-based of total.

    phase says what batch and total count (fitboard.app.core.progress puts them in words): "train" (or none, as stored
    before phases): batch b of an epoch's B; "lr_find": LR finder step n of the N asked for; "score": batch b of the
    final scoring of the validation set; "tta": TTA pass p of P (fastai's n augmented passes, then a plain one);
    "presize cache": image n of N resized into the cache."""

    event: Literal["progress"] = "progress"
    stage: int
    epoch: int
    batch: int
    total: int
    elapsed: float
    eta: float  # seconds left in this phase (training: in this epoch's training pass)
    smooth_loss: float | None = None
    phase: Literal["train", "lr_find", "score", "tta", "presize cache"] | None = None
    stage_count: int | None = None  # stages in the run
    epoch_count: int | None = None  # epochs in this stage
    run_eta: float | None = None  # seconds left in the whole run (fitboard.app.core.numbering.run_eta), when known


class EpochEvent(EngineEvent):
    """One row of the epoch table; (stage, epoch) is its key."""

    event: Literal["epoch"] = "epoch"
    stage: int
    epoch: int
    train_loss: float | None = None
    valid_loss: float | None = None
    metrics: dict[str, float | None] = {}
    seconds: float | None = None


class CheckpointEvent(EngineEvent):
    """The state after this epoch is safely on disk: a lost worker's run resumes after it."""

    event: Literal["checkpoint"] = "checkpoint"
    stage: int
    epoch: int


class FinalMetrics(EngineEvent):
    """Validation metrics of the final (or best) weights."""

    valid_loss: float | None = None
    accuracy: float | None = None
    error_rate: float | None = None


class TTAMetrics(EngineEvent):
    """Test-time augmentation's metrics and how they were taken."""

    n: int  # augmented passes (fastai's learn.tta n), besides the plain one
    use_max: bool  # the passes' maximum instead of their mean
    accuracy: float | None = None
    error_rate: float | None = None


class BestEpoch(EngineEvent):
    """Where the keep-best tracker found its best value."""

    stage: int  # 0-based, as stored (the pages say 1-based)
    epoch: int  # 0-based, within its stage
    metric: str  # the monitored metric (the recipe's keep_best)
    value: float | None = None


class Confusion(EngineEvent):
    """The confusion matrix: rows are actual classes, columns predicted, in label order."""

    labels: list[str]
    matrix: list[list[int]]


class TopLoss(EngineEvent):
    """A validation image the model got most wrong."""

    image_id: str
    actual: str
    predicted: str
    loss: float | None = None
    probability: float | None = None


class StageSpeed(EngineEvent):
    """How fast one stage trained: throughput, peak GPU memory and the share of each step spent waiting for data."""

    stage: int
    images_per_second: float | None = None
    data_wait: float | None = None  # time waiting for the next batch / step time, 0..1
    peak_memory_mb: float | None = None  # CUDA only
    steps: int = 0


class SpeedReport(EngineEvent):
    """What the speed mode enabled on this hardware, and each stage's figures."""

    mode: str = "default"
    precision: str = "fp32"  # the precision actually trained in
    channels_last: bool = False
    presize_cache: str | None = None  # "built N of M images", "reused", or None when off
    num_workers: int | None = None
    pin_memory: bool = False
    persistent_workers: bool = False
    stages: list[StageSpeed] = []


class ResultEvent(EngineEvent):
    """How a run ended: metrics, TTA, best epoch, confusion, top losses, files and speed."""

    event: Literal["result"] = "result"
    metrics: FinalMetrics
    tta: TTAMetrics | None = None
    best: BestEpoch | None = None
    confusion: Confusion | None = None
    top_losses: list[TopLoss] = []
    model_path: str | None = None
    predictions_path: str | None = None
    notes: list[str] = []
    stages: list[StageSummary] = []
    dataset: dict[str, Any] | None = None
    normalize_stats: list[list[float]] | None = None
    seconds: float | None = None
    images_per_second: float | None = None
    speed: SpeedReport | None = None

    def stored(self) -> dict:
        """The result as a run row keeps it (the event name dropped)."""
        return self.model_dump(mode="json", exclude={"event"})


class ErrorEvent(EngineEvent):
    """The run (or the recipe, before it ran) failed."""

    event: Literal["error"] = "error"
    message: str
    problems: list[dict[str, str]] | None = None
    traceback: str | None = None


Event = Annotated[Union[StartEvent, NoteEvent, LRFindEvent, StageEvent, StageEndEvent, ProgressEvent, EpochEvent,
                        CheckpointEvent, ResultEvent, ErrorEvent], Field(discriminator="event")]
EVENT = TypeAdapter(Event)


def parse_event(data: dict) -> Event:
    """An event from its JSON form (a `--json` line, an SSE frame)."""
    return EVENT.validate_python(data)
