"""Tables for people: accounts, their API tokens, project memberships, the audit log and the access generation."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from fitboard.app.store.models import UTCDateTime, utcnow

ROLES = ("viewer", "member", "admin")
SCOPES = ("read", "write", "worker")


def _at(nullable: bool = True, index: bool = False) -> sa.Column:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class Person(SQLModel, table=True):
    """An account: a name, an argon2 password hash, disabled or not, site admin or not."""

    __tablename__ = "person"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    password_hash: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    site_admin: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                                server_default=sa.false()))
    disabled: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                              server_default=sa.false()))
    # Moves on at a password change, a disable or a logout: a browser session signed under an older value is over.
    session_version: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False, server_default="0"))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_at(nullable=False))


class ApiToken(SQLModel, table=True):
    """A person's API token: only its SHA-256 is kept (tokens are random, 256 bits), and a prefix to recognise it."""

    __tablename__ = "api_token"
    __table_args__ = (sa.CheckConstraint(f"scope IN ({', '.join(repr(s) for s in SCOPES)})", name="scope"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(sa_column=sa.Column(sa.Integer(), sa.ForeignKey("person.id", ondelete="CASCADE"),
                                               nullable=False, index=True))
    digest: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    prefix: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    label: str = Field(default="", sa_column=sa.Column(sa.String(100), nullable=False, server_default=""))
    scope: str = Field(default="write", sa_column=sa.Column(sa.String(8), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_at(nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=_at())
    expires_at: datetime | None = Field(default=None, sa_column=_at())
    revoked_at: datetime | None = Field(default=None, sa_column=_at())


class Membership(SQLModel, table=True):
    """A person's role in a project: viewer (read), member (launch, cancel, ...) or admin (members, delete)."""

    __tablename__ = "membership"
    __table_args__ = (sa.CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),)
    project_id: int = Field(sa_column=sa.Column(sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"),
                                                primary_key=True))
    person_id: int = Field(sa_column=sa.Column(sa.Integer(), sa.ForeignKey("person.id", ondelete="CASCADE"),
                                               primary_key=True, index=True))
    role: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))


class AuditEntry(SQLModel, table=True):
    """One write that matters: who did what to which thing, when and from which address."""

    __tablename__ = "audit"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_at(nullable=False, index=True))
    actor: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))  # a person's name, or "site token"
    person_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.Integer(), sa.ForeignKey("person.id", ondelete="SET NULL"), nullable=True))
    action: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    target: str = Field(default="", sa_column=sa.Column(sa.String(200), nullable=False))
    project_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.Integer(), sa.ForeignKey("project.id", ondelete="SET NULL"), nullable=True))
    address: str = Field(default="", sa_column=sa.Column(sa.String(64), nullable=False))


class AccessGeneration(SQLModel, table=True):
    """One row whose counter moves on at every change of who may do what (a revoke, a disable, a grant, a new
    person): every web process compares it once per request and drops its cached principals when it moved."""

    __tablename__ = "access_generation"
    id: int = Field(default=1, sa_column=sa.Column(sa.Integer(), primary_key=True))
    value: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False))
