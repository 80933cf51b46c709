"""The recipe contract (RunSpec): pure pydantic, shared by the API, the form, recipe files and the worker."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fitboard.app.core.errors import RecipeError
from fitboard.text import NO_CONTROLS_PATTERN, first_control

# Architectures fastai knows how to split (body/head) for freeze and discriminative rates.
ARCHITECTURES = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "squeezenet1_0", "squeezenet1_1", "alexnet",
)

# Upper bounds: generous for real work, small enough that no single recipe can occupy a fleet for ever.
MAX_EPOCHS, MAX_STAGES, MAX_SIDE, MAX_BS, MAX_TTA, MAX_LR, MAX_ATTEMPTS = 1000, 20, 2048, 4096, 32, 10.0, 10
Side = Annotated[int, Field(strict=True, gt=0, le=MAX_SIDE)]
MAX_ID = 2**63 - 1  # the largest id or offset a database integer holds; more is refused before any query
MAX_PATH_CHARS = 1024  # a dataset path or name as given; file systems refuse more anyway
MAX_COMPONENT_BYTES = 255  # one file or folder name (NAME_MAX on Linux and macOS)


def _check_data_path(value: str) -> str:
    """A path or name relative to the data root: no NUL, no ~user, no component a file system would refuse."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if value.startswith("~"):
        raise ValueError("must not start with '~': paths are relative to the data root")
    longest = max((len(part.encode()) for part in value.replace("\\", "/").split("/")), default=0)
    if longest > MAX_COMPONENT_BYTES:
        raise ValueError(f"a file or folder name may have at most {MAX_COMPONENT_BYTES} bytes")
    return value


def _no_controls(value: str) -> str:
    """Refuse control and bidi characters: a name is printed by terminals and pages, where they could rewrite
    what the user sees (CR, ESC sequences, a U+202E reversing the text)."""
    found = first_control(value)
    if found is not None:
        raise ValueError(f"must not contain control or bidi characters (found {found})")
    return value


def text(max_length: int, min_length: int = 0):
    """A string type of bounded length without control or bidi characters (the schema states both)."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length,
                                json_schema_extra={"pattern": NO_CONTROLS_PATTERN}), AfterValidator(_no_controls)]


MAX_NAME = 200
Name = text(MAX_NAME, 1)  # a run's, sweep's, search's or tracked run's name
Column = text(200)  # a CSV column's name, or a label
MAX_LABELS = 10_000  # entries of an inline label map
# A path inside the data root (a dataset folder, its CSV, image folder or label map), or a dataset name.
DataPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_check_data_path),
                    AfterValidator(_no_controls)]
INT_FIELDS = ("epochs", "size", "presize", "bs")


# A recipe field path used as a key (a sweep's vary, a search's space): stages[0].size, stages[*].lr
PATH_KEY = re.compile(r"[a-z_]\w*(\[(\d+|\*)\])*(\.[a-z_]\w*(\[(\d+|\*)\])*)*")


def field_path(parts: tuple) -> str:
    """Render a pydantic location as a field path such as stages[1].lr (union member tags dropped)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif PATH_KEY.fullmatch(str(part)) and not str(part).isidentifier():
            out += ("." if out else "") + str(part)  # space.stages[*].lr: the key said which field, so it stays
        elif not str(part).isidentifier() or str(part)[:1].isupper():
            continue  # 'constrained-str', 'DatasetSpec', 'function-after[...]': pydantic's union tags
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(err: dict) -> str:
    """A readable message; positive-integer fields say so instead of pydantic's wording."""
    if err["type"] in ("greater_than", "int_type", "int_from_float", "int_parsing") and err["loc"][-1] in INT_FIELDS:
        return f"must be a positive integer; got {err['input']!r}"
    return err["msg"].removeprefix("Value error, ")


def problems_from(exc: ValidationError) -> list[dict]:
    """Turn a pydantic ValidationError into [{'loc', 'msg'}] with readable field paths."""
    errors = exc.errors()
    paths = [field_path(err["loc"]) for err in errors]
    problems = []
    for err, path in zip(errors, paths):
        if err["type"] == "string_type" and isinstance(err["input"], dict):
            continue  # an inline dataset object: its own field errors say what is wrong
        if err["type"] == "model_type" and isinstance(err["input"], str) and paths.count(path) > 1:
            continue  # a dataset name: what is wrong with the name says more than "not an object"
        problems.append({"loc": path, "msg": _message(err)})
    return problems


class TTASpec(BaseModel):
    """Test-time augmentation: n augmented passes averaged (or max-ed) with the plain prediction."""

    model_config = ConfigDict(extra="forbid")
    n: Annotated[int, Field(strict=True, ge=1, le=MAX_TTA, description="augmented passes")] = 4
    use_max: Annotated[bool, Field(strict=True)] = False


class AugmentSpec(BaseModel):
    """Batch augmentation: fastai's aug_transforms parameters, cropped to each stage's size (chapter 7's min_scale)."""

    model_config = ConfigDict(extra="forbid")
    flip: bool = True  # aug_transforms' do_flip: random horizontal flips (off for digits and text)
    flip_vert: bool = False  # with flip: also vertical flips and 90-degree turns (fastai's Dihedral)
    max_rotate: Annotated[float, Field(strict=True, ge=0, le=180, description="degrees")] = 10.0
    max_zoom: Annotated[float, Field(strict=True, ge=1, le=4)] = 1.1
    max_lighting: Annotated[float, Field(strict=True, ge=0, lt=1)] = 0.2
    max_warp: Annotated[float, Field(strict=True, ge=0, lt=1)] = 0.2
    p_affine: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.75
    p_lighting: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.75
    # aug_transforms' own default is 1.0 (no random crop); chapter 7 and fitboard before this field used 0.75.
    min_scale: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.75

    @field_validator("flip_vert")
    @classmethod
    def _check_flip_vert(cls, v, info):
        """fastai only flips vertically on top of horizontal flips; a lone flip_vert would silently do nothing."""
        if v and info.data.get("flip") is False:
            raise ValueError("flip_vert needs flip: true (fastai adds vertical flips to horizontal ones)")
        return v


class StageSpec(BaseModel):
    """One fit_one_cycle: epochs at an image size, with its batch size, learning rate and callbacks."""

    model_config = ConfigDict(extra="forbid")
    epochs: Annotated[int, Field(strict=True, gt=0, le=MAX_EPOCHS)]
    size: Side
    presize: Side | None = None
    bs: Annotated[int, Field(strict=True, gt=0, le=MAX_BS)] = 64
    freeze: Annotated[bool, Field(strict=True)] = False
    lr: Union[float, Literal["find"], Annotated[list[float], Field(json_schema_extra={"minItems": 2,
                                                                                      "maxItems": 2})]] = "find"
    lr_find_iters: Annotated[int, Field(strict=True, ge=10, le=1000)] = 100  # mock-training steps of lr: find
    # The schema states what the validators check (they give the messages): alpha in (0, 1], eps in (0, 1).
    mixup: Annotated[float | None, Field(json_schema_extra={"exclusiveMinimum": 0, "maximum": 1})] = None

    @field_validator("lr", mode="before")
    @classmethod
    def _check_lr(cls, v):
        """lr is a positive number, 'find', or an increasing [low, high] pair of positive numbers."""
        if isinstance(v, bool):
            raise ValueError("lr must be a positive number, 'find', or [low, high]")
        if isinstance(v, str):
            if v == "find":
                return v
            try:
                v = float(v)
            except ValueError:
                raise ValueError(f"lr must be a positive number, 'find', or [low, high]; got {v!r}") from None
        if isinstance(v, (int, float)):
            if not 0 < v <= MAX_LR:
                raise ValueError(f"lr must be positive and at most {MAX_LR:g}; got {v}")
            return float(v)
        if isinstance(v, (list, tuple)):
            if len(v) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise ValueError("lr as a list must be two numbers [low, high]")
            low, high = float(v[0]), float(v[1])
            if not (0 < low < high <= MAX_LR):
                raise ValueError(f"lr [low, high] must satisfy 0 < low < high <= {MAX_LR:g}; got [{low}, {high}]")
            return [low, high]
        raise ValueError("lr must be a positive number, 'find', or [low, high]")

    @field_validator("mixup")
    @classmethod
    def _check_mixup(cls, v):
        """MixUp's Beta alpha must lie in (0, 1]."""
        if v is not None and not (0 < v <= 1):
            raise ValueError(f"mixup alpha must be in (0, 1]; got {v}")
        return v

    @field_validator("presize")
    @classmethod
    def _check_presize(cls, v, info):
        """The item presize may never be smaller than the batch size it is cropped to."""
        size = info.data.get("size")
        if v is not None and size is not None and v < size:
            raise ValueError(f"presize ({v}) must not be smaller than size ({size})")
        return v

    @model_validator(mode="after")
    def _default_presize(self) -> "StageSpec":
        """Without a presize, items are resized straight to size."""
        if self.presize is None:
            self.presize = self.size
        return self


class DatasetSpec(BaseModel):
    """An inline dataset: csv or train/val folder layout; csv, images and label_map are relative to path."""

    model_config = ConfigDict(extra="forbid")
    layout: Literal["csv", "folder"]
    path: DataPath
    csv: DataPath | None = None
    images: DataPath | None = None
    image_col: Column | None = None
    label_col: Column | None = None
    valid_col: Column | None = None
    valid_pct: Annotated[float, Field(gt=0, lt=1)] = 0.2
    label_map: DataPath | Annotated[dict[Column, Column], Field(max_length=MAX_LABELS)] | None = None


class RunSpec(BaseModel):
    """A training recipe: the dataset, the model and the chapter-7 techniques, stage by stage."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    dataset: Union[DataPath, DatasetSpec]
    arch: Annotated[str, Field(json_schema_extra={"enum": list(ARCHITECTURES)})] = "resnet34"
    pretrained: Annotated[bool, Field(strict=True)] = True
    normalize: Literal["none", "imagenet", "dataset"] = "imagenet"
    label_smoothing: Annotated[float | None, Field(json_schema_extra={"exclusiveMinimum": 0,
                                                                      "exclusiveMaximum": 1})] = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 42
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    # fast: presize cache, mixed precision and channels_last on CUDA, pinned persistent loaders (README "Speed")
    speed: Literal["default", "fast"] = "default"
    keep_best: Literal["accuracy", "error_rate", "valid_loss"] | None = None
    tta: TTASpec | None = None
    # null (or the word none) turns batch augmentation off; a missing block means aug_transforms' defaults.
    augment: AugmentSpec | None = Field(default_factory=AugmentSpec)
    max_attempts: Annotated[int, Field(strict=True, ge=1, le=MAX_ATTEMPTS,
                                       description="attempts before a run whose worker is lost is failed")] = 3
    stages: Annotated[list[StageSpec], Field(max_length=MAX_STAGES, json_schema_extra={"minItems": 1})]

    @field_validator("arch")
    @classmethod
    def _check_arch(cls, v: str) -> str:
        """Only architectures fastai can split into body and head."""
        if v not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {v!r}; choose one of {', '.join(ARCHITECTURES)}")
        return v

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_none(cls, v):
        """`augment: none` reads best in YAML; it means the same as null."""
        if isinstance(v, str):
            if v.strip().lower() == "none":
                return None
            raise ValueError(f"augment must be a block of fields (flip, max_rotate, ...) or none; got {v!r}")
        return v

    @field_validator("label_smoothing")
    @classmethod
    def _check_eps(cls, v):
        """Label smoothing eps must lie in (0, 1)."""
        if v is not None and not (0 < v < 1):
            raise ValueError(f"label_smoothing must be in (0, 1); got {v}")
        return v

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, v):
        """A recipe trains at least once."""
        if not v:
            raise ValueError("a recipe needs at least one stage")
        return v

    def techniques(self) -> list[str]:
        """Short names of the chapter-7 techniques this recipe uses (for chips and summaries)."""
        chips = []
        if self.normalize != "none":
            chips.append(f"normalize:{self.normalize}")
        sizes = [s.size for s in self.stages]
        if len(set(sizes)) > 1:
            chips.append("progressive resizing")
        if any(s.presize > s.size for s in self.stages):
            chips.append("presizing")
        if any(s.lr == "find" for s in self.stages):
            chips.append("lr finder")
        if any(isinstance(s.lr, list) for s in self.stages):
            chips.append("discriminative lr")
        if any(s.freeze for s in self.stages) and any(not s.freeze for s in self.stages):
            chips.append("freeze/unfreeze")
        if any(s.mixup for s in self.stages):
            chips.append("mixup")
        if self.label_smoothing:
            chips.append("label smoothing")
        if self.keep_best:
            chips.append("keep best")
        if self.tta:
            chips.append("tta")
        if self.augment is None:
            chips.append("no augmentation")
        if self.precision != "fp32":
            chips.append(self.precision)
        if self.speed != "default":
            chips.append(f"speed:{self.speed}")
        return chips


def parse_spec(data: dict) -> RunSpec:
    """Validate a recipe dict, raising RecipeError with one problem per bad field."""
    if not isinstance(data, dict):
        raise RecipeError.one("", "a recipe must be a mapping of fields")
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(problems_from(exc)) from None
