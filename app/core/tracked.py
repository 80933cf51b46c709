"""Tracked runs: what a notebook's FitboardCallback sends (open, batches of rows, finish) and the recipe-like spec
the server keeps from it. Every list and string has an upper bound; unknown fields are refused."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.events import BestEpoch, Confusion, EpochEvent, FinalMetrics, LRFindEvent, ProgressEvent, TopLoss
from fitboard.app.core.schemas import MAX_BS, MAX_EPOCHS, MAX_LR, MAX_SIDE, Name, RunSpec, problems_from, text

MAX_TRACKED_STAGES = 100  # fit calls in one tracked run (a notebook may call fit many times)
MAX_TRACKED_ROWS = 2000  # epoch rows one tracked run keeps (its page shows them all)
MAX_BATCH_ROWS = 1000  # epoch rows per batch
MAX_BATCH_FINDS = 10
MAX_CURVE_POINTS = 2000  # points of one LR-finder curve
MAX_CLASSES = 1000
MAX_TOP_LOSSES = 100
MAX_METRICS = 20
MAX_COUNT = 10**12  # images, batches: more than any dataset has
MAX_SECONDS = 10**9  # about 30 years
MAX_MODEL_BYTES = 1024**3  # one uploaded learn.export file; a resnet152 export is under 250 MB
Short = text(200)
Label = text(500, 1)  # the dataset a notebook says it trained on
ImageId = text(1000)
Rate = Annotated[float, Field(gt=0, le=MAX_LR)]
Stage = Annotated[int, Field(ge=0, lt=MAX_TRACKED_STAGES)]
Epoch = Annotated[int, Field(ge=0, lt=MAX_EPOCHS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Metrics = Annotated[dict[Short, float | None], Field(max_length=MAX_METRICS)]


# strict: a boolean is no number (JSON false is not epoch 0 or 0 seconds), as the schema says
STRICT = ConfigDict(extra="forbid", strict=True)


class _Strict(BaseModel):
    model_config = STRICT


class TrackedFacts(_Strict):
    """What the callback could read from the learner before training; every field optional."""

    arch: Short | None = None
    pretrained: bool | None = None
    normalize: Literal["none", "imagenet", "dataset"] | None = None
    label_smoothing: Annotated[float, Field(gt=0, lt=1)] | None = None
    loss_func: Short | None = None
    opt_func: Short | None = None
    metrics: Annotated[list[Short], Field(max_length=20)] = []
    precision: Literal["fp32", "fp16", "bf16"] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    n_train: Count | None = None
    n_valid: Count | None = None
    classes: Annotated[list[Short], Field(max_length=MAX_CLASSES)] = []
    host: Short | None = None
    fastai: Short | None = None  # fastai's version


class TrackedOpen(_Strict):
    """POST /api/v1/tracked: a run trained outside fitboard begins."""

    name: Name
    dataset: Label = "notebook"
    facts: TrackedFacts = TrackedFacts()


class TrackedStage(_Strict):
    """One fit call as the callback saw it (0-based stage), in the recipe's stage words."""

    stage: Stage
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)]
    size: Annotated[int, Field(gt=0, le=MAX_SIDE)] | None = None
    bs: Annotated[int, Field(gt=0, le=MAX_BS)] | None = None
    freeze: bool | None = None
    lr: Rate | Annotated[list[Rate], Field(min_length=2, max_length=2)] | None = None
    mixup: Annotated[float, Field(gt=0, le=1)] | None = None
    schedule: Short | None = None  # fit_one_cycle, fit, fine_tune...


class Curve(LRFindEvent):
    """An LR-finder curve with bounded length."""

    model_config = STRICT

    stage: Stage
    method: Short = "valley"
    lrs: Annotated[list[float | None], Field(max_length=MAX_CURVE_POINTS)]
    losses: Annotated[list[float | None], Field(max_length=MAX_CURVE_POINTS)]

    @model_validator(mode="after")
    def _paired(self) -> "Curve":
        """The run page plots loss against learning rate: one loss per rate."""
        if len(self.lrs) != len(self.losses):
            raise ValueError(f"lrs and losses must be as long as each other (one loss per rate); got "
                             f"{len(self.lrs)} and {len(self.losses)}")
        return self


class _EpochKey(_Strict):
    """An event's (stage, epoch) in range: stage below MAX_TRACKED_STAGES, epoch below MAX_EPOCHS."""

    stage: Stage
    epoch: Epoch


class TrackedEpoch(_EpochKey, EpochEvent):
    """One epoch row with its key in range: stage below MAX_TRACKED_STAGES, epoch below MAX_EPOCHS."""

    metrics: Metrics = {}
    seconds: Seconds | None = None


class TrackedProgress(_EpochKey, ProgressEvent):
    """The latest batch progress, every count bounded."""

    batch: Count
    total: Count
    elapsed: Seconds
    eta: Seconds
    stage_count: Annotated[int, Field(ge=0, le=MAX_TRACKED_STAGES)] | None = None
    epoch_count: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] | None = None
    run_eta: Seconds | None = None


class TrackedBest(_EpochKey, BestEpoch):
    """Where the best epoch was, in range."""

    metric: Short


class TrackedConfusion(Confusion):
    """A confusion matrix of at most MAX_CLASSES classes: a row per label, a count per label in each row."""

    model_config = STRICT

    labels: Annotated[list[Short], Field(max_length=MAX_CLASSES)]
    matrix: Annotated[list[Annotated[list[Count], Field(max_length=MAX_CLASSES)]], Field(max_length=MAX_CLASSES)]

    @model_validator(mode="after")
    def _square(self) -> "TrackedConfusion":
        """The pages and compare draw it as labels x labels: a ragged or mismatched matrix is refused here."""
        n = len(self.labels)
        if len(self.matrix) != n or any(len(row) != n for row in self.matrix):
            raise ValueError(f"the matrix must have {n} rows of {n} counts, one per label")
        return self


class TrackedTopLoss(TopLoss):
    """A validation image the model got most wrong, its strings bounded, its probability a fraction."""

    model_config = STRICT

    image_id: ImageId
    actual: Short
    predicted: Short
    probability: Fraction | None = None  # the model's probability for its prediction


class TrackedBatch(_Strict):
    """POST /api/v1/tracked/{id}/rows: stages begun, epoch rows, LR-finder curves and the latest batch progress.
    Rows are keyed (stage, epoch), so sending a batch twice changes nothing."""

    stages: Annotated[list[TrackedStage], Field(max_length=MAX_TRACKED_STAGES)] = []
    epochs: Annotated[list[TrackedEpoch], Field(max_length=MAX_BATCH_ROWS)] = []
    lr_finds: Annotated[list[Curve], Field(max_length=MAX_BATCH_FINDS)] = []
    progress: TrackedProgress | None = None


class TrackedMetrics(FinalMetrics):
    """Validation metrics of the final (or best) weights; accuracy and error rate are fractions in [0, 1]."""

    model_config = STRICT

    # Bounded: accuracy becomes the run's best_accuracy, which sorts lists and compares (2.5 ranked first).
    accuracy: Fraction | None = None
    error_rate: Fraction | None = None


class TrackedFinish(_Strict):
    """POST /api/v1/tracked/{id}/finish: how it ended, its final metrics, and what the user asked to keep."""

    status: Literal["succeeded", "failed", "cancelled"] = "succeeded"
    metrics: TrackedMetrics = TrackedMetrics()
    best: TrackedBest | None = None
    confusion: TrackedConfusion | None = None
    top_losses: Annotated[list[TrackedTopLoss], Field(max_length=MAX_TOP_LOSSES)] = []
    error: Annotated[str, Field(max_length=10_000)] | None = None
    seconds: Seconds | None = None


def parse(model: type[BaseModel], data) -> BaseModel:
    """Validate a body, raising RecipeError (422) with one problem per bad field."""
    if isinstance(data, model):
        return data  # the API validated it already
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(problems_from(exc)) from None


def recipe_from(name: str, dataset: str, facts: TrackedFacts, stages: list[dict]) -> dict:
    """The recipe-like spec kept for a tracked run: RunSpec's field names where the learner told us, and what has
    no recipe field (loss, optimiser, metrics, sizes of the splits) under `tracked`."""
    spec: dict = {"name": name, "dataset": dataset}
    for field in ("arch", "pretrained", "normalize", "label_smoothing", "precision", "seed"):
        value = getattr(facts, field)
        if value is not None:
            spec[field] = value
    spec["stages"], size = [], None
    for s in sorted(stages, key=lambda s: s["stage"]):
        size = s.get("size") or size  # the pages describe every stage by its size: an unseen one keeps the last
        spec["stages"].append({**{k: v for k, v in s.items() if k not in ("stage", "schedule") and v is not None},
                               "size": size})
    spec["tracked"] = facts.model_dump(mode="json", exclude={"arch", "pretrained", "normalize", "label_smoothing",
                                                             "precision", "seed"}, exclude_none=True)
    spec["tracked"]["schedules"] = [s.get("schedule") for s in sorted(stages, key=lambda s: s["stage"])]
    return spec


def techniques_of(spec: dict) -> list[str]:
    """Technique chips for a tracked run: RunSpec's own chips when the facts make a valid recipe, and 'tracked'."""
    recipe = {k: v for k, v in spec.items() if k != "tracked"}
    stages, size = [], 224
    for s in spec.get("stages") or []:
        size = s.get("size") or size  # a stage whose size was not seen keeps the one before (no false chip)
        stages.append({"epochs": s.get("epochs", 1), "size": size, "bs": s.get("bs") or 64,
                       "freeze": bool(s.get("freeze")), "lr": s.get("lr") or 1e-3, "mixup": s.get("mixup")})
    recipe["stages"] = stages or [{"epochs": 1, "size": 224}]
    recipe.setdefault("normalize", "none")  # no chip for what the learner did not tell
    try:
        # any arch name will do here: the chips do not depend on it, and a notebook may train any model
        chips = RunSpec.model_validate({**recipe, "arch": "resnet34"}).techniques()
    except ValidationError:
        chips = []
    return ["tracked", *[c for c in chips if c != "lr finder"]]
