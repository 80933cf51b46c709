"""POST /api/v1/searches as a typed body: the base recipe, the space and the options, every bound in the schema and
unknown fields refused, so a typo such as max_trialz is a 422 naming it (fitboard.app.core.search_space and the
searches service check the same bounds for the form and the CLI)."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from fitboard.app.core.schemas import Name, RunSpec, text
from fitboard.app.core.search_space import INT_LIMIT, MAX_PARAMS
from fitboard.app.core.sweep_plan import MAX_VALUES

MAX_ITEMS = 32  # items in one list or object inside a choice
Whole = Annotated[int, Field(ge=-INT_LIMIT, le=INT_LIMIT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Key = text(100, 1)
Leaf = Union[None, bool, Whole, Finite, text(200)]
# A choice nests lists and objects at most three deep, spelled out so the schema states the depth (a recursive
# type would state none, and a fuzzer could nest 900 deep).
Choice1 = Union[Leaf, Annotated[list[Leaf], Field(max_length=MAX_ITEMS)],
                Annotated[dict[Key, Leaf], Field(max_length=MAX_ITEMS)]]
Choice2 = Union[Leaf, Annotated[list[Choice1], Field(max_length=MAX_ITEMS)],
                Annotated[dict[Key, Choice1], Field(max_length=MAX_ITEMS)]]
Choice = Union[Leaf, Annotated[list[Choice2], Field(max_length=MAX_ITEMS)],
               Annotated[dict[Key, Choice2], Field(max_length=MAX_ITEMS)]]
Choices = Annotated[list[Choice], Field(min_length=1, max_length=MAX_VALUES)]
FieldPath = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_\[\]*.]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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


Distribution = Union[Choices, ChoicesOf, IntRange, FloatRange, LogRange]


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


class SearchIn(_Strict):
    """POST /api/v1/searches."""

    base: RunSpec
    space: Annotated[dict[FieldPath, Distribution], Field(min_length=1, max_length=MAX_PARAMS)]
    options: SearchOptions = SearchOptions()

    def parts(self) -> tuple[dict, dict, dict]:
        """(base, space, options) as the searches service takes them: plain JSON values, as sent."""
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return self.base.model_dump(mode="json"), data["space"], data.get("options", {})
