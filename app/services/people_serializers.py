"""The API's shapes for people, tokens, projects and the audit log (never a password hash or a token digest)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fitboard.app.core.schemas import text
from fitboard.app.services.serializers import IsoTime

Label = text(100)  # a token's: printed by `fitboard tokens list` and the account page, so no control characters


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MeOut(_Out):
    """Who the caller is and what they may do where."""

    name: str
    site_admin: bool
    via: Literal["local", "site-token", "session", "token"] = Field(
        description="local: no accounts configured (loopback); site-token: FITBOARD_API_TOKEN; session: a browser "
                    "login; token: a person's API token")
    scope: str
    projects: dict[str, str] = Field(description="project name -> your role there (site admins: admin everywhere)")


class TokenOut(_Out):
    """A token as its owner's list shows it (the token itself is shown once, at creation)."""

    id: int
    prefix: str = Field(description="its first characters, to recognise it")
    label: str
    scope: Literal["read", "write", "worker"]
    created_at: IsoTime
    last_used_at: IsoTime
    expires_at: IsoTime
    revoked_at: IsoTime


class TokenCreated(TokenOut):
    """A new token: `token` is shown this once and never stored."""

    token: str


class TokenIn(BaseModel):
    """A token to create: for yourself, or (site admins) for the person named."""

    model_config = ConfigDict(extra="forbid")
    label: Label = ""
    scope: Literal["read", "write", "worker"] = "write"
    expires_days: int | None = Field(None, ge=1, le=3650, description="null: never expires")
    person: str | None = Field(None, max_length=64, description="site admins: whose token (default: yours)")


class PersonIn(BaseModel):
    """A new account."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=64)
    password: str = Field(..., min_length=8, max_length=1024)
    site_admin: bool = Field(False, strict=True)  # true or false: 0, 1 and "yes" are refused


class PersonOut(_Out):
    """An account (never its password hash)."""

    id: int
    name: str
    site_admin: bool
    disabled: bool
    created_at: IsoTime


class ProjectIn(BaseModel):
    """A project to create."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=64)


class ProjectOut(BaseModel):
    """A project and your role in it."""

    name: str
    role: Literal["viewer", "member", "admin"]


class GrantIn(BaseModel):
    """A person's role in a project; null removes them from it."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["viewer", "member", "admin"] | None


class AuditOut(_Out):
    """One audit row: who did what to which thing, when and from where."""

    id: int
    at: IsoTime
    actor: str
    action: str
    target: str
    project: str | None
    address: str


class AuditPage(BaseModel):
    """Audit rows, newest first; pass before=<the last id> for the next page."""

    items: list[AuditOut]
    total: int
