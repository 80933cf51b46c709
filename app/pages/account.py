"""Your account (password, API tokens) and, for site admins, the people and the audit log."""
from __future__ import annotations

from fastapi import APIRouter, Query, Request

from fitboard.app.core.errors import Conflict, NotFound, RecipeError
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.pages.render import FormData, PageId, redirect, render
from fitboard.app.services import people
from fitboard.app.store import people as store
from fitboard.app.store.people_models import Person
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import SessionDep

router = APIRouter()


def _me(access, session) -> Person | None:
    """The calling person's account (None: the local admin and the site token have none)."""
    who = access.principal
    return session.get(Person, who.person_id) if who.person_id else None


def _account(request: Request, access, session, status_code: int = 200, **extra):
    person = _me(access, session)
    tokens = people.tokens(session, person) if person else []
    return render(request, "account.html", status_code,
                  **{"person": person, "tokens": tokens, "new_token": None, "error": None, **extra})


@router.get("/account")
@needs("self")
def get_account(request: Request, access: AccessDep, session: SessionDep):
    """Your name, a password form and your API tokens (create, revoke)."""
    return _account(request, access, session)


def _with_account(request: Request, access, session, no_account: str, change):
    """change(person) for the calling person; the account page again with 409 when they have no account, or 422
    with the reason when change refuses the input."""
    person = _me(access, session)
    if person is None:
        return _account(request, access, session, 409, error=no_account)
    try:
        return change(person)
    except RecipeError as exc:
        return _account(request, access, session, 422, error=exc.problems[0]["msg"])


@router.post("/account/password")
@needs("self")
def post_account_password(request: Request, access: AccessDep, session: SessionDep, data: FormData):
    """Change your password; your other sessions end, this one goes on."""
    def change(person: Person):
        people.change_password(session, person, data.get("old_password") or "", data.get("new_password") or "")
        request.session["version"] = person.session_version
        request.session["notice"] = "Password changed; your other sessions have ended."
        return redirect("/account")
    return _with_account(request, access, session, "The local admin and the site token have no password.", change)


@router.post("/account/tokens")
@needs("self")
def post_account_tokens(request: Request, access: AccessDep, session: SessionDep, data: FormData):
    """Create a token and show it this once."""
    days = (data.get("expires_days") or "").strip()

    def create(person: Person):
        token, row = people.create_token(session, person, data.get("label") or "", data.get("scope") or "write",
                                         int(days) if days.isdecimal() else None if not days else -1)
        session.commit()
        access.note("token.create", f"token {row.prefix}… ({row.scope}) of {person.name}")
        return _account(request, access, session, 201, new_token=token)
    return _with_account(request, access, session, "Create tokens with `fitboard tokens create USER`.", create)


@router.post("/account/tokens/{token_id}/revoke")
@needs("self")
def post_account_token_revoke(request: Request, access: AccessDep, session: SessionDep, token_id: PageId,
                              data: FormData):
    """Revoke one of your tokens."""
    person = _me(access, session)
    try:
        if person is None:
            raise NotFound("token")
        row = people.revoke_token(session, token_id=token_id, owner=person)
    except NotFound:
        return _account(request, access, session, 404, error="No such token of yours.")
    access.note("token.revoke", f"token {row.prefix}… of {person.name}")
    return _done(request, f"Token {row.prefix}… revoked.", "/account")


def _done(request: Request, notice: str, url: str):
    """Back to a page after a write, with a one-time notice saying what was done."""
    request.session["notice"] = notice
    return redirect(url)


@router.get("/people")
@needs("site")
def get_people(request: Request, session: SessionDep):
    """Every account with its projects (site admins): add a person, disable or enable one."""
    names = store.projects(session)
    rows = [(p, {names[i]: r for i, r in store.roles_of(session, p.id).items()}) for p in store.list_people(session)]
    return render(request, "people.html", rows=rows, error=None)


@router.post("/people")
@needs("site")
def post_people(request: Request, access: AccessDep, session: SessionDep, data: FormData):
    """Add an account."""
    name = (data.get("name") or "").strip()
    try:
        people.add_person(session, name, data.get("password") or "", data.get("site_admin") == "on")
    except (RecipeError, Conflict) as exc:
        session.rollback()
        return _done(request, f"Not added: {exc.problems[0]['msg'] if isinstance(exc, RecipeError) else exc}",
                     "/people")
    access.note("person.add", f"person {name}")
    return _done(request, f"{name} added.", "/people")


@router.post("/people/{person}/disable")
@needs("site")
def post_people_disable(request: Request, access: AccessDep, session: SessionDep, person: str, data: FormData):
    """Disable (or, with enable=1, enable) an account: its sessions and tokens stop at once."""
    enable = data.get("enable") == "1"
    people.set_disabled(session, person[:64], not enable)
    access.note("person.enable" if enable else "person.disable", f"person {person[:64]}")
    return _done(request, f"{person[:64]} {'enabled' if enable else 'disabled'}.", "/people")


@router.get("/audit")
@needs("site")
def get_audit(request: Request, session: SessionDep, before: int | None = Query(None, ge=1, le=MAX_ID)):
    """The audit log, newest first (site admins)."""
    rows, total = store.audit_page(session, 100, before)
    return render(request, "audit.html", rows=rows, total=total, projects=store.projects(session),
                  older=rows[-1].id if len(rows) == 100 else None)
