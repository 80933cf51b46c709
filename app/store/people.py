"""Domain functions for people, tokens, projects, memberships and the audit log (the caller commits)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlmodel import Session

from fitboard.app.store.models import Project, utcnow
from fitboard.app.store.people_models import AccessGeneration, ApiToken, AuditEntry, Membership, Person

MAX_AUDIT_PAGE = 500


def bump_generation(session: Session) -> None:
    """Say to every web process that who may do what changed: their cached principals are dropped."""
    session.exec(update(AccessGeneration).where(AccessGeneration.id == 1).values(value=AccessGeneration.value + 1))


# Built once and run on the session's connection: every request reads it, and building the statement and running it
# through the ORM cost three times the query itself.
_GENERATION = select(AccessGeneration.value).where(AccessGeneration.id == 1)


def generation(session: Session) -> int:
    """The current access generation."""
    return session.connection().execute(_GENERATION).scalar_one_or_none() or 0


def people_exist(session: Session) -> bool:
    """True once a person was added: from then on every caller must log in or present a token."""
    return session.exec(select(Person.id).limit(1)).first() is not None


def _named(session: Session, model, name: str):
    """The person or project with this name, or None."""
    return session.exec(select(model).where(model.name == name)).scalars().first()


def _add(session: Session, row, what: str):
    """Add a person or project under a name nobody has yet (ValueError otherwise); the access generation moves."""
    if _named(session, type(row), row.name) is not None:
        raise ValueError(f"a {what} named {row.name!r} exists")
    session.add(row)
    session.flush()
    bump_generation(session)
    return row


def add_person(session: Session, name: str, password_hash: str, site_admin: bool = False) -> Person:
    """A new account; ValueError when the name is taken."""
    return _add(session, Person(name=name, password_hash=password_hash, site_admin=site_admin), "person")


def person_named(session: Session, name: str) -> Person | None:
    """The account with this name, or None."""
    return _named(session, Person, name)


def list_people(session: Session) -> list[Person]:
    """Every account, by name."""
    return list(session.exec(select(Person).order_by(Person.name)).scalars().all())


def end_sessions(session: Session, person: Person, **changes) -> None:
    """Apply changes (a new hash, disabled) and end every browser session of the person."""
    for key, value in changes.items():
        setattr(person, key, value)
    person.session_version += 1
    session.add(person)
    bump_generation(session)


def add_token(session: Session, person_id: int, digest: str, prefix: str, label: str, scope: str,
              expires_at: datetime | None) -> ApiToken:
    """Keep a new token's digest."""
    token = ApiToken(person_id=person_id, digest=digest, prefix=prefix, label=label, scope=scope,
                     expires_at=expires_at)
    session.add(token)
    session.flush()
    return token


def token_by_digest(session: Session, digest: str) -> tuple[ApiToken, Person] | None:
    """The token with this digest and its owner, or None."""
    row = session.exec(select(ApiToken, Person).join(Person, Person.id == ApiToken.person_id)
                       .where(ApiToken.digest == digest)).first()
    return None if row is None else (row[0], row[1])


def tokens_of(session: Session, person_id: int) -> list[ApiToken]:
    """A person's tokens, newest first (revoked ones too: the list says so)."""
    return list(session.exec(select(ApiToken).where(ApiToken.person_id == person_id)
                             .order_by(ApiToken.id.desc())).scalars().all())


def revoke(session: Session, token: ApiToken) -> None:
    """Revoke a token now: its next request gets 401."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        bump_generation(session)


def touch_token(session: Session, token_id: int) -> None:
    """Note that a token was used now."""
    session.exec(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


def add_project(session: Session, name: str) -> Project:
    """A new project; ValueError when the name is taken."""
    return _add(session, Project(name=name), "project")


def project_named(session: Session, name: str) -> Project | None:
    """The project with this name, or None."""
    return _named(session, Project, name)


def projects(session: Session) -> dict[int, str]:
    """Every project: id -> name."""
    return dict(session.exec(select(Project.id, Project.name).order_by(Project.name)).all())


def grant(session: Session, project_id: int, person_id: int, role: str | None) -> None:
    """Give a person a role in a project (None: take their membership away)."""
    row = session.get(Membership, (project_id, person_id))
    if role is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(Membership(project_id=project_id, person_id=person_id, role=role))
    else:
        row.role = role
        session.add(row)
    session.flush()
    bump_generation(session)


def roles_of(session: Session, person_id: int) -> dict[int, str]:
    """A person's roles: project id -> role."""
    return dict(session.exec(select(Membership.project_id, Membership.role)
                             .where(Membership.person_id == person_id)).all())


def members(session: Session, project_id: int) -> list[tuple[str, str]]:
    """A project's people and their roles, by name."""
    return [tuple(r) for r in session.exec(select(Person.name, Membership.role)
                                           .join(Membership, Membership.person_id == Person.id)
                                           .where(Membership.project_id == project_id).order_by(Person.name)).all()]


def record(session: Session, actor: str, person_id: int | None, action: str, target: str,
           project_id: int | None, address: str) -> None:
    """Add an audit row."""
    session.add(AuditEntry(actor=actor[:100], person_id=person_id, action=action[:32], target=target[:200],
                           project_id=project_id, address=address[:64]))


def audit_page(session: Session, limit: int = 100, before: int | None = None) -> tuple[list[AuditEntry], int]:
    """Audit rows, newest first, older than id `before` when given; and how many there are in all."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(min(limit, MAX_AUDIT_PAGE))
    if before is not None:
        query = query.where(AuditEntry.id < before)
    total = session.exec(select(func.count()).select_from(AuditEntry)).scalar_one()
    return list(session.exec(query).scalars().all()), total
