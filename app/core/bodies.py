"""The API's request bodies that are not a recipe alone (searches, sweeps, datasets, retries), typed: every bound in
the schema and unknown fields refused, so a typo such as max_trialz is a 422 naming it and a fuzzer reaches every
field (the services check the same bounds, with their own words, for the forms and the CLI)."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from fitboard.app.core.schemas import DatasetSpec, Name, RunSpec, text
from fitboard.app.core.search_space import INT_LIMIT, MAX_PARAMS
from fitboard.app.core.sweep_plan import MAX_VALUES

Priority = Annotated[Literal["high", "normal", "low"], Field(description="where its runs stand in the fair queue: "
                                                                       "high ones start first")]
MAX_ITEMS = 32  # items in one list or object inside a choice
Whole = Annotated[int, Field(ge=-INT_LIMIT, le=INT_LIMIT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Key = text(100, 1)
Leaf = Union[None, bool, Whole, Finite, text(200)]


def _no_deeper(value):
    """A list or object where only a plain value may be: the choice nests too deep."""
    if isinstance(value, (list, dict)):
        raise ValueError("a choice nests lists and objects at most 3 deep")
    return value


def _shape(value) -> str:
    return "List" if isinstance(value, list) else "Dict" if isinstance(value, dict) else "Leaf"


def nest(inner):
    """A plain value, or a bounded list or object of `inner` (one member tried: the 422 says what is wrong)."""
    return Annotated[Union[Annotated[Leaf, Tag("Leaf")],
                           Annotated[list[inner], Field(max_length=MAX_ITEMS), Tag("List")],
                           Annotated[dict[Key, inner], Field(max_length=MAX_ITEMS), Tag("Dict")]],
                     Discriminator(_shape)]


# A choice nests lists and objects at most three deep, spelled out so the schema states the depth (a recursive
# type would state none, and a fuzzer could nest 900 deep).
Innermost = Annotated[Leaf, BeforeValidator(_no_deeper)]
Choice1 = nest(Innermost)
Choice2 = nest(Choice1)
Choice = nest(Choice2)
Choices = Annotated[list[Choice], Field(min_length=1, max_length=MAX_VALUES)]
FieldPath = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_\[\]*.]*$")]


class _Strict(BaseModel):
    # strict: a boolean is no number, as the schema says (JSON false is not max_trials 0)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class ChoicesOf(_Strict):
    """{choices: [...]}: the values to try."""

    choices: Choices


class IntRange(_Strict):
    """{int: [low, high]}: whole numbers from low to high."""

    int_: Annotated[list[Whole], Field(alias="int", min_length=2, max_length=2)]


class FloatRange(_Strict):
    """{float: [low, high]}: any number from low to high."""

    float_: Annotated[list[Finite], Field(alias="float", min_length=2, max_length=2)]


class LogRange(_Strict):
    """{log: [low, high]}: a positive number from low to high, drawn on a log scale."""

    log: Annotated[list[Annotated[float, Field(gt=0, allow_inf_nan=False)]], Field(min_length=2, max_length=2)]


def _kind(value) -> str | None:
    """Which form of distribution a value is: a list, or the one key of {choices|int|float|log: ...}."""
    if isinstance(value, list):
        return "List"
    if isinstance(value, BaseModel):  # dumping a validated body: the member it already is
        return {ChoicesOf: "Choices", IntRange: "Int", FloatRange: "Float", LogRange: "Log"}[type(value)]
    if isinstance(value, dict) and len(value) == 1:
        return KINDS.get(next(iter(value)))
    return None


# Tags are capitalised so error locations read space.<path>.int[1], not space.<path>.int.int[1] (field_path drops
# capitalised parts); one member is tried, so the 422 names what is wrong with it alone.
KINDS = {"choices": "Choices", "int": "Int", "float": "Float", "log": "Log"}
Distribution = Annotated[Union[Annotated[Choices, Tag("List")], Annotated[ChoicesOf, Tag("Choices")],
                               Annotated[IntRange, Tag("Int")], Annotated[FloatRange, Tag("Float")],
                               Annotated[LogRange, Tag("Log")]],
                         Discriminator(_kind, custom_error_type="distribution",
                                       custom_error_message="give a list of choices, or one of {choices: [...]}, "
                                                            "{int: [low, high]}, {float: [low, high]}, "
                                                            "{log: [low, high]}")]


class SearchOptions(_Strict):
    """A search's budget, metric, pruner, sampler and verify sweep; each one optional."""

    name: Name | None = None
    metric: Literal["accuracy", "error_rate", "valid_loss"] | None = None
    direction: Literal["maximize", "minimize"] | None = None
    pruner: Literal["asha", "hyperband", "median", "none"] | None = None
    sampler: Literal["tpe", "random", "grid"] | None = None
    max_trials: Annotated[int, Field(ge=1, le=100_000)] | None = None  # and at most FITBOARD_MAX_SWEEP_RUNS
    max_parallel: Annotated[int, Field(ge=1, le=256)] | None = None
    k: Annotated[int, Field(ge=1, le=8)] | None = None
    seeds: Annotated[int, Field(ge=3, le=16)] | None = None
    min_resource: Annotated[int, Field(ge=1, le=1000)] | None = None
    reduction_factor: Annotated[int, Field(ge=2, le=10)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    first: Annotated[list[Annotated[dict[FieldPath, Choice], Field(min_length=1, max_length=MAX_PARAMS)]],
                     Field(max_length=MAX_VALUES)] | None = None
    priority: Priority | None = None  # its trials' and its verify sweep's place in the fair queue (default normal)


class SearchIn(_Strict):
    """POST /api/v1/searches."""

    base: RunSpec
    space: Annotated[dict[FieldPath, Distribution], Field(min_length=1, max_length=MAX_PARAMS)]
    options: SearchOptions = SearchOptions()

    def parts(self) -> tuple[dict, dict, dict]:
        """(base, space, options) as the searches service takes them: plain JSON values, as sent."""
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return self.base.model_dump(mode="json"), data["space"], data.get("options", {})


MAX_VARIED = 64  # fields one sweep varies (FITBOARD_MAX_SWEEP_RUNS bounds the runs they make)
MAX_SEEDS = 1024
Seed = Annotated[int, Field(ge=0, lt=2**32)]
Seeds = Annotated[list[Seed], Field(min_length=1, max_length=MAX_SEEDS, json_schema_extra={"uniqueItems": True})]


class SweepIn(_Strict):
    """POST /api/v1/sweeps: a base recipe, the fields to vary with their values, the seeds and the mode."""

    base: RunSpec
    vary: Annotated[dict[FieldPath, Choices], Field(min_length=1, max_length=MAX_VARIED)]
    seeds: Seeds = [0, 1, 2]
    mode: Literal["grid", "one_at_a_time"] = "one_at_a_time"
    priority: Priority = "normal"


class SeedsIn(_Strict):
    """POST /api/v1/sweeps/{id}/seeds: more seeds for every variant."""

    seeds: Seeds


class DatasetIn(_Strict):
    """POST /api/v1/datasets: a name and the dataset's layout under the data root."""

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    spec: DatasetSpec


class RetryIn(_Strict):
    """POST /api/v1/runs/{id}/retry: from the last epoch checkpoint (rows kept) or from scratch."""

    start: Literal["checkpoint", "scratch"] = Field("checkpoint", alias="from")
