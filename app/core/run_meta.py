"""What people add to a run after submitting it: a new name, plain-text notes, tags, the archived flag, and what
they change of its place in the queue: its priority."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import field_path

MAX_NAME, MAX_NOTES, MAX_TAGS, MAX_TAG = 200, 10_000, 16, 40
TAG_REGEX = r"^[\w.:+/-]{1,%d}$" % MAX_TAG
TAG_PATTERN = re.compile(TAG_REGEX[1:-1])
# DEL, C1 controls, bidi marks and overrides, line separators (as fitboard.text.CONTROLS)
_BIDI = r"\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
NAME_REGEX = rf"^[^\x00-\x1f{_BIDI}]*[^\s\x00-\x1f{_BIDI}][^\x00-\x1f{_BIDI}]*$"  # one line, not blank
NOTES_REGEX = rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f{_BIDI}]*$"  # line breaks and tabs, no other control characters
# Notes keep line breaks and tabs; other control characters (NUL above all: PostgreSQL text refuses it) never.
_CONTROL = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f{_BIDI}]")


def _name(value: str) -> str:
    """A run name: stripped, not blank, one line."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if _CONTROL.search(value) or "\n" in value or "\r" in value or "\t" in value:
        raise ValueError("must be one line without control or bidi characters")
    return value


def _notes(value: str) -> str:
    """Plain-text notes: any text but control characters; line breaks are kept."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control or bidi characters")
    return value.replace("\r\n", "\n").strip()


def check_tag(value: str) -> str:
    """One tag: letters, digits and . : + / - _ (no comma or space), at most MAX_TAG characters."""
    if not TAG_PATTERN.fullmatch(value):  # no stripping: " a" is refused, as the schema's pattern says
        raise ValueError(f"a tag is 1 to {MAX_TAG} letters, digits or . : + / - _ (no spaces or commas); "
                         f"got {value[:60]!r}")
    return value


def _tags(values: list[str]) -> list[str]:
    """Tags without repeats, in the order given."""
    return list(dict.fromkeys(values))


class RunPatch(BaseModel):
    """PATCH /api/v1/runs/{id}: only the fields present change."""

    model_config = ConfigDict(extra="forbid")

    # Defaults of None are never validated: a field left out does not change, an explicit null is refused. The
    # patterns state in the schema what the validators enforce (one visible character, no control characters); the
    # validators give the messages.
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME, json_schema_extra={"pattern": NAME_REGEX}),
                    AfterValidator(_name)] = None
    notes: Annotated[str, Field(max_length=MAX_NOTES, json_schema_extra={"pattern": NOTES_REGEX},
                                description="plain text; \"\" clears"), AfterValidator(_notes)] = None
    tags: Annotated[list[Annotated[str, Field(max_length=MAX_TAG, json_schema_extra={"pattern": TAG_REGEX}),
                                   AfterValidator(check_tag)]],
                    Field(max_length=MAX_TAGS, description="replaces the run's tags; [] clears"),
                    AfterValidator(_tags)] = None
    archived: Annotated[bool, Field(strict=True)] = None  # true or false: 0, 1 and "yes" are refused
    # its place in the fair queue: admins set any; a member may only lower the priority of a run they launched
    priority: Annotated[Literal["high", "normal", "low"], Field(description="high, normal or low: admins set any; "
                                                                            "members lower their own runs'")] = None

    def changes(self) -> dict:
        """The fields the caller sent."""
        return self.model_dump(exclude_unset=True)


def parse_tags(text: str) -> list[str]:
    """Tags typed into a form: separated by commas or spaces."""
    return [t for t in re.split(r"[,\s]+", text or "") if t]


def parse_patch(data: dict) -> RunPatch:
    """A RunPatch, or RecipeError naming each bad field."""
    try:
        return RunPatch.model_validate(data)
    except ValidationError as exc:
        raise RecipeError([{"loc": field_path(tuple(e["loc"])) or "body", "msg": e["msg"].removeprefix(
            "Value error, ")} for e in exc.errors()]) from None


def tags_column(tags: list[str]) -> str:
    """Tags as stored: ",a,b," ("" for none)."""
    return f",{','.join(tags)}," if tags else ""
