"""The one access check every API route, page, stream and file route goes through.

A route declares what it needs with @needs(level): open (login pages), self (any identified caller: their own
account), read / member / admin (a role in the route's project), or site (site admins). The check, in order:
who is calling (app.web.principals), whether their token's scope allows this route at all, which project the
request is about (the path's run, sweep, search or prediction; else ?project=NAME; else the caller's default
project: a dataset's name means the one of that project), and the caller's role there. A thing in a project the
caller cannot see answers the same 404 as a thing that does not exist. The request's database session is then scoped
to that project (app.store.ownership): lists and counts show only its rows, and what the route adds lands in it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, AsyncIterator, Callable
from urllib.parse import urlencode

from fastapi import Body, Depends, HTTPException, Path, Request, status
from sqlalchemy import select
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from fitboard.app.core.errors import (
    NotFound,
    RecipeError,
    RunNotFound,
    SearchNotFound,
    SweepNotFound,
)
from fitboard.app.core.fairshare import PRIORITIES, RANK
from fitboard.app.core.run_meta import RunPatch
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.services.compare import parse_ids
from fitboard.app.store import people as people_store
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import DEFAULT_PROJECT_ID, Prediction, Run, Search, Sweep
from fitboard.app.web.deps import SessionDep, get_session, on_the_way_out
from fitboard.app.web.principals import LOCAL_ADMIN, SITE_TOKEN, WROTE, Principal
from fitboard.app.web.security import TOO_MANY, check_csrf, client_address, form_data, logged_in, token_matches

LEVELS = ("open", "self", "read", "member", "admin", "site")
ROLE_LEVEL = {"read": 1, "member": 2, "admin": 3}
SAFE = ("GET", "HEAD", "OPTIONS")
API = "/api/"


@dataclass(frozen=True)
class Rule:
    """What a route needs: a level, whether a worker-scope token may call it, and the audit action it records."""

    level: str
    worker: bool = False
    audit: str | None = None


def needs(level: str, worker: bool = False, audit: str | None = None) -> Callable:
    """Declare a route's access rule (see the module docstring); every route must have one."""
    assert level in LEVELS, level
    rule = Rule(level, worker, audit)

    def mark(fn):
        fn.__access__ = rule
        return fn
    return mark


def rule_of(endpoint) -> Rule | None:
    """The rule a route's endpoint declared, or None."""
    return getattr(endpoint, "__access__", None)


@dataclass
class Access:
    """The outcome of the check: who, in which project, with which role; and the audit rows the route noted."""

    principal: Principal
    project_id: int | None = None
    project_name: str | None = None
    address: str = ""
    projects: dict[int, str] = field(default_factory=dict)  # every project the caller can see: id -> name
    exists: frozenset[str] = frozenset()  # path parameters (run_id, ...) whose thing this check found
    notes: list[tuple[str, str]] = field(default_factory=list)

    def can(self, level: str) -> bool:
        """True when the caller holds level (read, member, admin) in this project."""
        return self.project_id is not None and self.principal.level(self.project_id) >= ROLE_LEVEL[level]

    def require(self, level: str) -> None:
        """403 unless the caller holds level here (for a route whose body decides what it does: bulk actions)."""
        if not self.can(level):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {level} role in project "
                                                           f"{self.project_name!r}")

    def note(self, action: str, target: str) -> None:
        """Record an audit row for this request once the route has succeeded."""
        self.notes.append((action, target))


def _unauthenticated(request: Request) -> HTTPException:
    if request.url.path.startswith(API):
        return HTTPException(status.HTTP_401_UNAUTHORIZED, "send Authorization: Bearer <token>, or log in",
                             headers={"WWW-Authenticate": "Bearer"})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTTPException(303, "log in first", headers={"Location": "/login?" + urlencode({"next": target})})


def _bearer(request: Request, session: Session, generation: int) -> Principal:
    """The principal a bearer token stands for; 401 (counted by the throttle) for any other token."""
    state, header = request.app.state, request.headers.get("authorization", "")
    token, site = header[7:].strip(), state.settings.api_token
    throttle, address = state.auth_throttle, client_address(request)
    # Throttled addresses are refused before any comparison, so guessing on cannot tell a right token either.
    if throttle.failures and (wait := throttle.retry_after(address)) is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY, headers={"Retry-After": str(wait)})
    if site and token_matches(token, site):
        return SITE_TOKEN
    who = state.directory.by_token(session, token)
    if who is not None:
        return who
    if not site and not state.directory.people_exist(session, generation):
        return LOCAL_ADMIN  # zero-config: nothing to check a token against
    throttle.fail(address)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid, revoked or expired API token",
                        headers={"WWW-Authenticate": "Bearer"})


def identify(request: Request, session: Session) -> Principal | None:
    """Who is calling: a bearer token, a person's browser session, a site-token login, or the local admin when
    nobody is configured; None for an anonymous caller where logins are on."""
    state = request.app.state
    generation = state.directory.sync(session)
    if request.headers.get("authorization", "")[:7].lower() == "bearer ":
        return _bearer(request, session, generation)
    person, version = request.session.get("person"), request.session.get("version")
    if isinstance(person, int) and isinstance(version, int):
        return state.directory.by_session(session, person, version)
    if state.settings.api_token:
        return SITE_TOKEN if logged_in(request) else None
    return None if state.directory.people_exist(session, generation) else LOCAL_ADMIN


def _check_scope(request: Request, who: Principal, rule: Rule) -> None:
    """A worker token only reaches worker routes; a read token only reads."""
    if who.scope == "worker" and not rule.worker:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a worker token may only report training (tracked runs)")
    if who.scope == "read" and request.method not in SAFE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token has the read scope; writing needs a write token")


def _int(raw) -> int | None:
    return int(raw) if isinstance(raw, str) and raw.isdecimal() and 1 <= int(raw) <= MAX_ID else None


# path parameter -> (table, the 404 its route raises for an unknown one)
RESOURCES = {"run_id": (Run, RunNotFound), "sweep_id": (Sweep, SweepNotFound), "search_id": (Search, SearchNotFound),
             "prediction_id": (Prediction, lambda i: NotFound(f"prediction {i}"))}


def _compare_ids(request: Request) -> list[int]:
    """The run ids a compare names (ids=3,5 or ids=3&ids=5), read as its route reads them; none when the route
    refuses the list whatever it names (422: a malformed id, one run, past MAX_COMPARE), so that its answer is the
    same for ids of a hidden project and ids of nothing."""
    try:
        return parse_ids(",".join(request.query_params.getlist("ids")))
    except RecipeError:
        return []


def _resource_projects(request: Request, session: Session) -> list[tuple[int | None, Exception]]:
    """(project id, its 404) of each thing the path (or a compare's ids) names; None for one that does not exist."""
    found = []
    for key, (model, missing) in RESOURCES.items():
        if (rid := _int(request.path_params.get(key))) is not None:
            pid = session.exec(select(model.project_id).where(model.id == rid)).scalar_one_or_none()
            found.append((pid, missing(rid)))
            if pid is not None:
                request.state.exists = {*getattr(request.state, "exists", ()), key}
    # A dataset's name is no such key: names are unique per project, so /datasets/NAME means the one of the request's
    # project (?project=NAME or the default), and the route's scoped session finds it or answers 404.
    ids = _compare_ids(request) if request.url.path in ("/compare", f"{API}v1/compare") else []
    if ids:
        rows = dict(session.exec(select(Run.id, Run.project_id).where(Run.id.in_(ids))).all())
        found += [(rows.get(i), RunNotFound(i)) for i in ids]
    return found


def _default_project(who: Principal) -> int | None:
    """The project a caller's lists and launches use when the request names none."""
    if who.site_admin or DEFAULT_PROJECT_ID in who.roles:
        return DEFAULT_PROJECT_ID
    return min(who.roles) if who.roles else None


def _named(request: Request) -> tuple[str | None, bool]:
    """The project the request names and whether it named it itself (the path's, ?project=NAME), or else the one
    this browser last switched to (pages remember the switcher's choice)."""
    named = request.path_params.get("project") or request.query_params.get("project")
    if named:
        return named, True
    return (request.session.get("project") if "session" in request.scope else None), False


def _project(request: Request, session: Session, who: Principal) -> tuple[int, dict[int, str]]:
    """The request's project, checked visible to the caller (404 otherwise, as for a thing that does not exist),
    and every project the caller can see."""
    found = _resource_projects(request, session)
    for pid, missing in found:
        # One that does not exist answers here too, before the role and the body are looked at: left to the route, a
        # bad body (422) or a role too low (403) told it apart from another project's thing (404).
        if pid is None or who.level(pid) < 1:
            raise missing
    visible = {i: n for i, n in request.app.state.directory.projects(session).items() if who.level(i) >= 1}
    if found:
        return found[0][0], visible
    named, explicit = _named(request)
    pid = next((i for i, n in visible.items() if n == named), None) if named else None
    if pid is None and explicit:
        raise NotFound(f"project {named!r}")
    if pid is not None and explicit and not request.url.path.startswith(API) and "session" in request.scope:
        request.session["project"] = named  # the switcher's choice holds while this browser moves between pages
    pid = pid or _default_project(who)  # a remembered choice no longer visible: back to the default
    if pid is None:
        raise NotFound("a project of yours (ask an admin to add you to one)")
    return pid, visible


def check(request: Request, session: Session) -> Access:
    """Decide the request (see the module docstring); raises 401 / 303 to login / 403 / 404."""
    rule = rule_of(request.scope["route"].endpoint)
    if rule is None:  # every route declares one (tests/test_access_matrix.py lists them); refuse rather than guess
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this route declares no access rule")
    address = client_address(request)
    if rule.level == "open":
        return Access(identify(request, session) or Principal("anonymous", scope="none"), address=address)
    who = identify(request, session)
    if who is None:
        raise _unauthenticated(request)
    _check_scope(request, who, rule)
    bearer = request.headers.get("authorization", "")[:7].lower() == "bearer "
    if request.method not in SAFE and not bearer and "fitboard_session" in request.cookies \
            and request.url.path.startswith(API):
        check_csrf(request, request.headers.get("x-csrf-token"))  # a cookie alone must not authorize a write
    if rule.level == "self":
        return Access(who, address=address)
    if rule.level == "site":
        if not who.site_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only site admins may do this")
        return Access(who, address=address)
    pid, visible = _project(request, session, who)
    name = visible.get(pid) or request.app.state.directory.projects(session).get(pid, "default")
    access = Access(who, pid, name, address, visible, frozenset(getattr(request.state, "exists", ())))
    if not access.can(rule.level):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {rule.level} role in project {name!r}")
    return access


def _audit_target(request: Request) -> str:
    """What a declared audit action acted on: the thing the path names."""
    for key, what in (("run_id", "run"), ("sweep_id", "sweep"), ("search_id", "search"), ("name", "dataset")):
        if key in request.path_params:
            return f"{what} {request.path_params[key]}"
    return request.url.path


def _checked(request: Request, keep: bool) -> Access:
    """check() in a new session (run in a worker thread: it reads the database); keep: the route asks for the
    request's session, so this one is handed on (request.state.handed_session, with its scope, to end it) instead of
    closed here."""
    scope = session_scope(request.app.state.engine)
    session = scope.__enter__()
    try:
        access = check(request, session)
    except BaseException as exc:
        scope.__exit__(type(exc), exc, exc.__traceback__)
        raise
    # A check that wrote (a token's last use, once a minute) commits it now: handed on, its write lock (SQLite) or
    # row lock (PostgreSQL) would be held for as long as the route runs.
    if not keep or session.info.get(WROTE):
        scope.__exit__(None, None, None)
    else:  # on the request, not returned: a request cancelled while this thread ran still finds it to end
        request.state.handed_session = (scope, session)
    return access


def _asks_session(route) -> bool:
    """Whether the route's dependencies include get_session, at any depth (found once, kept on the route)."""
    def walk(dependant) -> bool:
        return any(d.call is get_session or walk(d) for d in dependant.dependencies)
    asks = getattr(route, "fitboard_asks_session", None)
    if asks is None:
        asks = route.fitboard_asks_session = walk(route.dependant)
    return asks


def _audit(request: Request, access: Access, notes: list[tuple[str, str]]) -> None:
    """Write the audit rows of a route that succeeded."""
    who = access.principal
    with session_scope(request.app.state.engine) as session:
        for action, target in notes:
            people_store.record(session, who.name, who.person_id, action, target, access.project_id, access.address)


async def guard(request: Request) -> AsyncIterator[Access]:
    """The access dependency: checks, hands the route its Access, then writes the audit rows of a route that
    succeeded (a route that raised records nothing)."""
    # Async, each database step sent to a worker thread by itself: a sync generator dependency took two trips
    # through the thread pool (in and out), and most routes write no audit row on the way out.
    # The check's session becomes the route's own (get_session takes it): one connection a request, not two, which
    # on PostgreSQL saves a checkout's ping, a BEGIN and a COMMIT.
    route = request.scope["route"]
    request.state.handed_session = None
    try:
        access = request.state.access = await run_in_threadpool(_checked, request, _asks_session(route))
        yield access
    finally:
        # The route never took it (a dependency before get_session refused the request, or the request was
        # cancelled): ended here.
        if (left := request.state.handed_session) is not None:
            request.state.handed_session = None
            await on_the_way_out(left[0].__exit__, None, None, None)
    rule = rule_of(route.endpoint)
    notes = access.notes + ([(rule.audit, _audit_target(request))] if rule and rule.audit else [])
    if notes:
        await on_the_way_out(_audit, request, access, notes)


# The route's own bound, checked here too: this dependency runs before the route's path parameter is validated.
BoundedId = Annotated[int, Path(ge=1, le=MAX_ID)]


def priorities_allowed(access: Access, launched_by: int | None, current: str | None) -> tuple[str, ...]:
    """The priorities this caller may give a run: any for admins (of its project, or the site); for a member, the
    run's own and lower ones when they launched it; none otherwise (the run page offers just these)."""
    if access.can("admin"):
        return PRIORITIES
    if not access.can("member") or launched_by is None or launched_by != access.principal.person_id:
        return ()
    return PRIORITIES[RANK[current or "normal"]:]


def may_set_priority(access: Access, run_id: int, priority: str, session: Session) -> None:
    """The caller may give the run this priority (priorities_allowed); 403 saying why otherwise."""
    if access.can("admin"):
        return
    row = session.exec(select(Run.launched_by, Run.priority).where(Run.id == run_id)).one_or_none()
    if row is None:
        return  # the route answers its 404
    launched_by, current = row
    allowed = priorities_allowed(access, launched_by, current)
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin may change the priority of a run someone "
                                                       "else launched")
    if priority not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a member may lower the priority of their own runs, not "
                                                       f"raise it ({current} to {priority}); ask an admin")


# These two read the run in the route's own session: SessionDep exactly as the route asks for it, so that FastAPI
# gives both the one session (a Depends(get_session) of another scope was a second one, a second connection).
def checked_patch(run_id: BoundedId, access: Annotated[Access, Depends(guard)],
                  session: SessionDep, patch: RunPatch = Body(...)) -> RunPatch:
    """PATCH /runs/{id}'s body, once the caller may make its changes (a priority change: may_set_priority)."""
    if patch.priority is not None:
        may_set_priority(access, run_id, patch.priority, session)
    return patch


def checked_priority(run_id: BoundedId, access: Annotated[Access, Depends(guard)],
                     session: SessionDep,
                     data: Annotated[dict, Depends(form_data)]) -> str:
    """A page form's priority for a run: the form CSRF-checked first (a forged or missing token is 403 whatever
    else it holds), then 422 for a bad value, then whether the caller may set it (may_set_priority)."""
    priority = data.get("priority")
    if priority not in RANK:
        shown = priority[:40] if priority is not None else None
        raise RecipeError.one("priority", f"priority is one of high, normal, low; got {shown!r}")
    may_set_priority(access, run_id, priority, session)
    return priority


# Request scope (the audit rows are written once the answer is out): a function-scoped generator here delayed the
# first byte of every event stream.
AccessDep = Annotated[Access, Depends(guard)]
GUARD = Depends(guard)
CheckedPatch = Annotated[RunPatch, Depends(checked_patch)]
CheckedPriority = Annotated[str, Depends(checked_priority)]
