"""A project's members page: its admins see who has which role, add a person, change a role, remove a member."""
from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request

from fitboard.app.core.errors import NotFound, RecipeError
from fitboard.app.pages.render import FormData, redirect, render
from fitboard.app.services import people
from fitboard.app.store import people as store
from fitboard.app.store.people_models import ROLES
from fitboard.app.web.access import AccessDep, needs
from fitboard.app.web.deps import SessionDep

router = APIRouter()
ProjectName = Annotated[str, Path(min_length=1, max_length=100)]
PersonName = Annotated[str, Path(min_length=1, max_length=64)]


def _members_url(project: str) -> str:
    return f"/projects/{quote(project, safe='')}/members"


def _page(request: Request, access, session, status_code: int = 200, error: str | None = None, form=None):
    return render(request, "project.html", status_code, project=access.project_name, roles=ROLES, error=error,
                  members=store.members(session, access.project_id), form=form or {"person": "", "role": "viewer"})


def _grant(request: Request, access, session, person: str, role: str | None, form: dict | None = None):
    """Give person the role here (None: remove them), note it for the audit log, and back to the members page; the
    page again with the reason when the person or the role is refused."""
    try:
        people.grant(session, access.project_name, person, role)
    except (RecipeError, NotFound) as exc:  # a role not offered, or a name nobody has: the form's field is wrong
        session.rollback()
        if isinstance(exc, RecipeError):
            return _page(request, access, session, 422, f"role: {exc.problems[0]['msg']}", form)
        return _page(request, access, session, 422, f"person: no account is named {person!r}", form)
    access.note("grant", f"{person} as {role or 'nobody'} in {access.project_name}")
    request.session["notice"] = (f"{person} is {role} of {access.project_name}." if role
                                 else f"{person} removed from {access.project_name}.")
    return redirect(_members_url(access.project_name))


@router.get("/projects/{project}/members")
@needs("admin")
def get_project_members(request: Request, access: AccessDep, session: SessionDep, project: ProjectName):
    """The project's people and their roles, with forms to add a person, change a role or remove a member."""
    return _page(request, access, session)


@router.post("/projects/{project}/members")
@needs("admin")
def post_project_members(request: Request, access: AccessDep, session: SessionDep, project: ProjectName,
                         data: FormData):
    """Give a person a role in the project (a new member, or a changed role)."""
    form = {"person": (data.get("person") or "").strip()[:64], "role": data.get("role") or ""}
    return _grant(request, access, session, form["person"], form["role"], form)


@router.post("/projects/{project}/members/{person}/remove")
@needs("admin")
def post_project_member_remove(request: Request, access: AccessDep, session: SessionDep, project: ProjectName,
                               person: PersonName, data: FormData):
    """Take a person's membership of the project away (their next request no longer sees it)."""
    return _grant(request, access, session, person, None)
