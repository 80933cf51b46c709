"""/api/v1/me, tokens, projects, people and audit: accounts, per-person tokens, roles and who did what."""
from __future__ import annotations

from typing import Annotated

from fastapi import Body, Path, Query, Response

from fitboard.app.api import WRITE_ERRORS, api_router, errors
from fitboard.app.core.errors import Conflict
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.services import people
from fitboard.app.services.people_serializers import (
    AuditPage,
    GrantIn,
    MeOut,
    PersonIn,
    PersonOut,
    ProjectIn,
    ProjectOut,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from fitboard.app.store import people as store
from fitboard.app.store.people_models import Person
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import SessionDep

router = api_router("people")
Name = Annotated[str, Path(min_length=1, max_length=64)]
NO_ACCOUNT = ("the site token and the local admin have no account to hold a token: name a person, or use "
              "`fitboard tokens create USER`")


def _visible(access, session) -> dict[str, str]:
    who = access.principal
    names = store.projects(session)
    if who.site_admin:
        return {n: "admin" for n in names.values()}
    return {names[i]: r for i, r in who.roles.items() if i in names}


@router.get("/me", response_model=MeOut)
@needs("self")
def get_me(access: AccessDep, session: SessionDep):
    """Who you are (by your token or login) and your role in each project you can see."""
    who = access.principal
    return {"name": who.name, "site_admin": who.site_admin, "via": who.via, "scope": who.scope,
            "projects": _visible(access, session)}


def _owner(access, session, name: str | None) -> Person:
    """Whose tokens: yours, or (site admins) the person named."""
    who = access.principal
    if name is not None and name != who.name:
        if not who.site_admin:
            raise Conflict("only site admins manage another person's tokens")
        return people.person(session, name)
    if who.person_id is None:
        raise Conflict(NO_ACCOUNT)
    return session.get(Person, who.person_id)


@router.get("/tokens", response_model=list[TokenOut], responses=errors(409, 422))
@needs("self")
def get_tokens(access: AccessDep, session: SessionDep,
               person: str | None = Query(None, max_length=64, description="site admins: whose tokens")):
    """Your tokens (revoked ones too), newest first: label, scope, created, last used, expiry."""
    return [TokenOut.model_validate(t).model_dump(mode="json") for t in people.tokens(session, _owner(access, session,
                                                                                                   person))]


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses={**WRITE_ERRORS, **errors(409)})
@needs("self")
def post_tokens(access: AccessDep, session: SessionDep, body: TokenIn = Body(...)):
    """Create a token: the answer's `token` is shown this once (only its SHA-256 is kept)."""
    owner = _owner(access, session, body.person)
    token, row = people.create_token(session, owner, body.label, body.scope, body.expires_days)
    session.commit()
    access.note("token.create", f"token {row.prefix}… ({row.scope}) of {owner.name}")
    return {**TokenOut.model_validate(row).model_dump(mode="json"), "token": token}


@router.delete("/tokens/{token_id}", response_model=TokenOut, responses=errors(409, 422))
@needs("self")
def delete_token(access: AccessDep, session: SessionDep, token_id: int = Path(ge=1, le=MAX_ID),
                 person: str | None = Query(None, max_length=64, description="site admins: whose token")):
    """Revoke one of your tokens: its next request gets 401."""
    owner = _owner(access, session, person)
    row = people.revoke_token(session, token_id=token_id, owner=owner)
    session.commit()
    access.note("token.revoke", f"token {row.prefix}… of {owner.name}")
    return TokenOut.model_validate(row).model_dump(mode="json")


@router.get("/projects", response_model=list[ProjectOut])
@needs("self")
def get_projects(access: AccessDep, session: SessionDep):
    """The projects you can see and your role in each."""
    return [{"name": n, "role": r} for n, r in sorted(_visible(access, session).items())]


@router.post("/projects", status_code=201, response_model=ProjectOut, responses={**WRITE_ERRORS, **errors(409)})
@needs("site")
def post_projects(access: AccessDep, session: SessionDep, body: ProjectIn = Body(...)):
    """Create a project (site admins)."""
    people.add_project(session, body.name)
    access.note("project.create", f"project {body.name}")
    return {"name": body.name, "role": "admin"}


@router.put("/projects/{project}/members/{person}", response_model=GrantIn, responses={**WRITE_ERRORS,
                                                                                       **errors(404)})
@needs("admin")
def put_project_member(access: AccessDep, session: SessionDep, person: Name,
                       project: Annotated[str, Path(min_length=1, max_length=100)], body: GrantIn = Body(...)):
    """Make a person viewer, member or admin of the project, or (role null) remove them (project admins)."""
    people.grant(session, project, person, body.role)
    access.note("grant", f"{person} as {body.role or 'nobody'} in {project}")
    return {"role": body.role}


@router.get("/people", response_model=list[PersonOut])
@needs("site")
def get_people(session: SessionDep):
    """Every account (site admins)."""
    return [PersonOut.model_validate(p).model_dump(mode="json") for p in store.list_people(session)]


@router.post("/people", status_code=201, response_model=PersonOut, responses={**WRITE_ERRORS, **errors(409)})
@needs("site")
def post_people(access: AccessDep, session: SessionDep, body: PersonIn = Body(...)):
    """Add an account (site admins); the first account turns logins on."""
    created = people.add_person(session, body.name, body.password, body.site_admin)
    access.note("person.add", f"person {body.name}" + (" (site admin)" if body.site_admin else ""))
    return PersonOut.model_validate(created).model_dump(mode="json")


@router.post("/people/{person}/disable", status_code=204, responses={**WRITE_ERRORS, **errors(404)})
@needs("site")
def post_person_disable(access: AccessDep, session: SessionDep, person: Name) -> Response:
    """Disable an account: its sessions and tokens stop at their next request (site admins)."""
    return _disabled(access, session, person, True)


@router.post("/people/{person}/enable", status_code=204, responses={**WRITE_ERRORS, **errors(404)})
@needs("site")
def post_person_enable(access: AccessDep, session: SessionDep, person: Name) -> Response:
    """Enable a disabled account again (its old sessions stay ended)."""
    return _disabled(access, session, person, False)


def _disabled(access, session, person: str, disabled: bool) -> Response:
    """Disable or enable an account, noted for the audit log."""
    people.set_disabled(session, person, disabled)
    access.note("person.disable" if disabled else "person.enable", f"person {person}")
    return Response(status_code=204)


@router.get("/audit", response_model=AuditPage, responses=errors(422))
@needs("site")
def get_audit(session: SessionDep, limit: int = Query(100, ge=1, le=500),
              before: int | None = Query(None, ge=1, le=MAX_ID)):
    """Who launched, cancelled, retried, deleted, archived, granted, created or revoked what, when and from where
    (site admins), newest first."""
    rows, total = store.audit_page(session, limit, before)
    names = store.projects(session)
    return {"items": [{"id": r.id, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target,
                       "project": names.get(r.project_id), "address": r.address} for r in rows], "total": total}
