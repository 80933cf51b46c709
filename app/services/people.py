"""People as the API, the pages and the CLI use them: accounts, passwords, tokens, projects and roles."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from fitboard.app.core.credentials import (
    check_name,
    check_password,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from fitboard.app.core.errors import Conflict, NotFound, RecipeError
from fitboard.app.store import people as store
from fitboard.app.store.models import Project, utcnow
from fitboard.app.store.people_models import ROLES, SCOPES, ApiToken, Person
from fitboard.text import first_control

MAX_TOKEN_DAYS = 3650
MAX_LABEL = 100


def _new(add, *args):
    """add(*args), a taken name (the store's ValueError) as 409."""
    try:
        return add(*args)
    except ValueError as exc:
        raise Conflict(str(exc)) from None


def _named(find, session: Session, name: str, what: str):
    """find(session, name), NotFound (naming what) when nothing has that name."""
    found = find(session, name) if isinstance(name, str) else None
    if found is None:
        raise NotFound(f"{what} {name!r}")
    return found


def add_person(session: Session, name: str, password: str, site_admin: bool = False) -> Person:
    """A new account (the first one turns logins on); 422 for a bad name or password, 409 for a taken name."""
    check_name(name)
    check_password(password)
    return _new(store.add_person, session, name, hash_password(password), site_admin)


def person(session: Session, name: str) -> Person:
    """The account with this name; NotFound otherwise."""
    return _named(store.person_named, session, name, "person")


def authenticate(session: Session, name: str, password: str) -> Person | None:
    """The enabled account these credentials open, or None (a wrong name costs as long as a wrong password)."""
    found = store.person_named(session, name) if isinstance(name, str) and len(name) <= 64 else None
    ok = verify_password(found.password_hash if found else None, password or "")
    return found if ok and found is not None and not found.disabled else None


def change_password(session: Session, who: Person, old: str, new: str) -> None:
    """A new password once the old one is confirmed; every other session of the person ends."""
    if not verify_password(who.password_hash, old or ""):
        raise RecipeError.one("old_password", "that is not the current password")
    check_password(new, "new_password")
    store.end_sessions(session, who, password_hash=hash_password(new))


def set_disabled(session: Session, name: str, disabled: bool = True) -> Person:
    """Disable (or enable) an account: a disabled person's sessions and tokens stop at their next request."""
    found = person(session, name)
    store.end_sessions(session, found, disabled=disabled)
    return found


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise RecipeError.one("scope", f"one of {', '.join(SCOPES)}")
    return scope


def create_token(session: Session, owner: Person, label: str = "", scope: str = "write",
                 expires_days: int | None = None) -> tuple[str, ApiToken]:
    """A new token for owner: the token itself (shown once, never stored) and its row."""
    label = (label or "").strip()
    if len(label) > MAX_LABEL:
        raise RecipeError.one("label", f"at most {MAX_LABEL} characters")
    if (found := first_control(label)) is not None:  # `fitboard tokens list` prints it in a tab-separated row
        raise RecipeError.one("label", f"must not contain control or bidi characters (found {found})")
    if expires_days is not None and not (isinstance(expires_days, int) and 1 <= expires_days <= MAX_TOKEN_DAYS):
        raise RecipeError.one("expires_days", f"a whole number of days from 1 to {MAX_TOKEN_DAYS}")
    token, digest, prefix = new_token()
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    return token, store.add_token(session, owner.id, digest, prefix, label, _scope(scope), expires)


def tokens(session: Session, owner: Person) -> list[ApiToken]:
    """The owner's tokens, newest first."""
    return store.tokens_of(session, owner.id)


def revoke_token(session: Session, token: str | None = None, token_id: int | None = None,
                 owner: Person | None = None) -> ApiToken:
    """Revoke a token given itself (the CLI) or its id (owner's list in the browser or API); NotFound otherwise."""
    row = None
    if token is not None:
        found = store.token_by_digest(session, token_digest(token))
        row = found[0] if found else None
    elif token_id is not None:
        row = session.get(ApiToken, token_id)
    if row is None or (owner is not None and row.person_id != owner.id):
        raise NotFound("token")
    store.revoke(session, row)
    return row


def add_project(session: Session, name: str) -> Project:
    """A new project; 422 for a bad name, 409 for a taken one."""
    return _new(store.add_project, session, check_name(name))


def project(session: Session, name: str) -> Project:
    """The project with this name; NotFound otherwise."""
    return _named(store.project_named, session, name, "project")


def grant(session: Session, project_name: str, person_name: str, role: str | None) -> tuple[Project, Person]:
    """Make a person viewer, member or admin of a project (role None: remove them from it)."""
    if role is not None and role not in ROLES:
        raise RecipeError.one("role", f"one of {', '.join(ROLES)}")
    where, who = project(session, project_name), person(session, person_name)
    store.grant(session, where.id, who.id, role)
    return where, who
