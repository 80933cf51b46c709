"""The access matrix: every route of the app (API and pages, read from app.routes) against every kind of caller.

ROWS says what each route needs; a route missing from ROWS fails the suite, and so does a route whose declared rule
differs from its row. Each caller's expected answer follows from the row: anonymous 401 (pages: to the login
page), a revoked or expired token 401, another project's member 404 (its existence is not told), a role too low 403,
a read token that writes 403, a worker token off the worker routes 403; a caller who may act gets exactly what the
site admin gets for the same request (a 422 for the deliberately empty bodies, a 409 for a finished run, ...).
"""
from __future__ import annotations

import re
import traceback

import pytest
from fastapi import Depends, HTTPException, Request
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import event

from fitboard.app.core.settings import Settings
from fitboard.app.web.access import AccessDep, needs, rule_of
from fitboard.app.web.app import create_app
from fitboard.app.web.deps import SessionDep
from tests.helpers import tiny_recipe
from tests.people_world import build
from tests.store_fixtures import *  # noqa: F401,F403

# (method, path) -> level; "worker:member" = member, and a worker-scope token may call it too.
ROWS = {
    ("GET", "/api/v1/me"): "self", ("GET", "/api/v1/tokens"): "self", ("POST", "/api/v1/tokens"): "self",
    ("DELETE", "/api/v1/tokens/{token_id}"): "self", ("GET", "/api/v1/projects"): "self",
    ("POST", "/api/v1/projects"): "site", ("PUT", "/api/v1/projects/{project}/members/{person}"): "admin",
    ("GET", "/api/v1/people"): "site", ("POST", "/api/v1/people"): "site",
    ("POST", "/api/v1/people/{person}/disable"): "site", ("POST", "/api/v1/people/{person}/enable"): "site",
    ("GET", "/api/v1/audit"): "site",
    ("POST", "/api/v1/runs"): "member", ("GET", "/api/v1/runs"): "read", ("PATCH", "/api/v1/runs/{run_id}"): "member",
    ("DELETE", "/api/v1/runs/{run_id}"): "admin", ("GET", "/api/v1/runs/{run_id}"): "read",
    ("GET", "/api/v1/runs/{run_id}/epochs"): "read", ("GET", "/api/v1/runs/{run_id}/lr_finds"): "read",
    ("GET", "/api/v1/runs/{run_id}/attempts"): "read", ("GET", "/api/v1/runs/{run_id}/model"): "read",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "member", ("POST", "/api/v1/runs/{run_id}/retry"): "member",
    ("GET", "/api/v1/runs/{run_id}/events"): "read",
    ("POST", "/api/v1/datasets"): "admin", ("GET", "/api/v1/datasets"): "read",
    ("GET", "/api/v1/datasets/{name}"): "read", ("GET", "/api/v1/workers"): "read",
    ("GET", "/api/v1/compare"): "read", ("POST", "/api/v1/sweeps"): "member",
    ("GET", "/api/v1/sweeps/{sweep_id}"): "read", ("POST", "/api/v1/sweeps/{sweep_id}/seeds"): "member",
    ("POST", "/api/v1/searches"): "member", ("GET", "/api/v1/searches/{search_id}"): "read",
    ("POST", "/api/v1/searches/{search_id}/cancel"): "member", ("POST", "/api/v1/runs/{run_id}/predict"): "member",
    ("GET", "/api/v1/predictions/{prediction_id}"): "read", ("POST", "/api/v1/tracked"): "worker:member",
    ("POST", "/api/v1/tracked/{run_id}/rows"): "worker:member",
    ("POST", "/api/v1/tracked/{run_id}/finish"): "worker:member",
    ("PUT", "/api/v1/tracked/{run_id}/model"): "worker:member",
    ("GET", "/login"): "open", ("POST", "/login"): "open", ("POST", "/logout"): "open",
    ("GET", "/account"): "self", ("POST", "/account/password"): "self", ("POST", "/account/tokens"): "self",
    ("POST", "/account/tokens/{token_id}/revoke"): "self", ("GET", "/people"): "site", ("POST", "/people"): "site",
    ("POST", "/people/{person}/disable"): "site", ("GET", "/audit"): "site",
    ("GET", "/projects/{project}/members"): "admin", ("POST", "/projects/{project}/members"): "admin",
    ("POST", "/projects/{project}/members/{person}/remove"): "admin",
    ("GET", "/runs/new"): "member", ("POST", "/runs/new"): "member", ("GET", "/runs/{run_id}/clone"): "member",
    ("POST", "/runs/new/import"): "member", ("GET", "/runs/{run_id}/recipe.yaml"): "read",
    ("POST", "/runs/{run_id}/edit"): "member", ("POST", "/runs/{run_id}/archive"): "member",
    ("POST", "/runs/{run_id}/delete"): "admin", ("POST", "/runs/bulk"): "member", ("GET", "/"): "read",
    ("GET", "/runs"): "read", ("GET", "/runs/{run_id}"): "read", ("POST", "/runs/{run_id}/cancel"): "member",
    ("POST", "/runs/{run_id}/retry"): "member", ("GET", "/datasets"): "read", ("POST", "/datasets"): "admin",
    ("GET", "/datasets/{name}"): "read", ("GET", "/datasets/{name}/images/{k}"): "read",
    ("GET", "/workers"): "read", ("GET", "/queue"): "read", ("GET", "/api/v1/queue"): "read",
    ("POST", "/runs/{run_id}/priority"): "member", ("GET", "/compare"): "read",
    ("GET", "/runs/{run_id}/search"): "member",
    ("POST", "/runs/{run_id}/search"): "member", ("GET", "/searches"): "read",
    ("GET", "/searches/{search_id}"): "read", ("POST", "/searches/{search_id}/cancel"): "member",
    ("GET", "/runs/{run_id}/ablate"): "member", ("POST", "/runs/{run_id}/ablate"): "member",
    ("GET", "/sweeps"): "read", ("GET", "/sweeps/{sweep_id}"): "read", ("POST", "/sweeps/{sweep_id}/seeds"): "member",
}
# Served outside the access check, to anyone: liveness, the API's description and the docs' assets.
PUBLIC = {("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/vendor/plotly.min.js")}
# Which of alpha's things a path's parameters name, per route (default: the succeeded run "run").
RUN_FOR = {"/api/v1/runs/{run_id}": {"DELETE": "live"}, "/runs/{run_id}/delete": {"POST": "live"},
           "/api/v1/tracked/{run_id}/rows": "tracked", "/api/v1/tracked/{run_id}/finish": "tracked",
           "/api/v1/tracked/{run_id}/model": "tracked"}
# Bodies chosen so that an allowed caller changes nothing: they are refused (422), or meet a finished run (409).
BODIES = {
    ("POST", "/api/v1/runs"): {"json": {}}, ("PATCH", "/api/v1/runs/{run_id}"): {"json": {"archived": "x"}},
    ("POST", "/api/v1/runs/{run_id}/retry"): {"json": {}}, ("POST", "/api/v1/datasets"): {"json": {}},
    ("POST", "/api/v1/sweeps"): {"json": {}}, ("POST", "/api/v1/sweeps/{sweep_id}/seeds"): {"json": {"seeds": "x"}},
    ("POST", "/api/v1/searches"): {"json": {}}, ("POST", "/api/v1/tracked"): {"json": {}},
    ("POST", "/api/v1/tracked/{run_id}/rows"): {"json": {}},
    ("POST", "/api/v1/tracked/{run_id}/finish"): {"json": {"status": "x"}},
    ("PUT", "/api/v1/tracked/{run_id}/model"): {"content": b"weights"},
    ("POST", "/api/v1/tokens"): {"json": {"scope": "root"}}, ("POST", "/api/v1/projects"): {"json": {"name": "Bad!"}},
    ("PUT", "/api/v1/projects/{project}/members/{person}"): {"json": {"role": "boss"}},
    ("POST", "/api/v1/people"): {"json": {}}, ("POST", "/api/v1/runs/{run_id}/predict"): {"files": {}},
}
CALLERS = ("anonymous", "vera", "mia", "ada", "bo", "revoked", "expired", "read", "worker")
VIEWS = {"vera": 1, "mia": 2, "ada": 3, "read": 2, "worker": 2}  # their level in alpha (tokens are mia's)
NEED = {"read": 1, "member": 2, "admin": 3}


@pytest.fixture(scope="module")
def world(tmp_path_factory, sqlite_template, data_root):
    """One team's fitboard for every row of the matrix."""
    w = build(tmp_path_factory.mktemp("matrix"), sqlite_template, data_root)
    yield w
    for client, _ in w.clients.values():
        client.__exit__(None, None, None)


def routes(app) -> list[tuple[str, str, object]]:
    """(method, path, endpoint) of every route the app serves, HEAD aside."""
    out = []
    for ctx in iter_route_contexts(app.routes):  # included routers' routes with their full paths
        route = ctx.original_route
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                out.append((method, ctx.path, getattr(route, "endpoint", None)))
    return out


def url(world, method: str, path: str, ids: dict | None = None, project: str = "alpha") -> str:
    """The path with alpha's things in it (or the ids given), and ?project=alpha (or the project given)."""
    ids, pick = ids or world.ids, RUN_FOR.get(path, "run")
    pick = pick.get(method, "run") if isinstance(pick, dict) else pick
    values = {"run_id": ids[pick], "sweep_id": ids["sweep"], "search_id": ids["search"], "k": 0,
              "prediction_id": ids["prediction"], "name": "alpha-data", "token_id": 999999, "project": project,
              "person": "nobody"}
    filled = path.format(**{k: v for k, v in values.items() if "{" + k + "}" in path})
    extra = f"&ids={ids['run']},{ids['run2']}" if path.endswith("/compare") else ""
    return f"{filled}?project={project}{extra}"


def call(world, caller: str, method: str, path: str, ids: dict | None = None, project: str = "alpha"):
    """The caller's answer (ids, project: in place of alpha's): the status, or "login" for a redirect to the login
    page."""
    level = ROWS[(method, path)]
    kwargs = dict(BODIES.get((method, path), {}))
    if caller in world.clients and level != "open":
        client, csrf = world.clients[caller]
        headers = {"X-CSRF-Token": csrf}
        if not path.startswith("/api/") and method == "POST":
            kwargs["data"] = {"csrf_token": csrf}
    else:  # a token alone, or nobody (open routes too: a login or logout there must not touch the sessions)
        client, headers = TestClient(world.app, follow_redirects=False), {}
        token = world.tokens.get(caller) or (world.tokens["write"] if caller in world.clients else None)
        if token and caller not in world.clients:
            headers["Authorization"] = f"Bearer {token}"
        if not path.startswith("/api/") and method == "POST":
            kwargs["data"] = {"csrf_token": "none"}
    r = client.request(method, url(world, method, path, ids, project), headers=headers, **kwargs)
    login = r.status_code == 303 and r.headers.get("location", "").startswith("/login")
    return "login" if login else r.status_code


def expected(caller: str, method: str, path: str, reference):
    """What the row says this caller gets, given what the site admin got."""
    level, api = ROWS[(method, path)], path.startswith("/api/")
    worker_ok = level.startswith("worker:")
    level = level.removeprefix("worker:")
    if level == "open":
        return 401 if caller in ("revoked", "expired") else reference
    if caller == "anonymous":
        return 401 if api else "login"
    if caller in ("revoked", "expired"):
        return 401
    if caller == "worker" and not worker_ok:
        return 403
    if caller == "read" and method != "GET":
        return 403
    if level == "self":
        return reference
    if level == "site":
        return 403
    if caller == "bo":
        return 404  # alpha is not bo's: everything in it answers as if it did not exist
    return reference if VIEWS[caller] >= NEED[level] else 403


def test_every_route_has_a_row_and_declares_it(world):
    missing, wrong = [], []
    for method, path, endpoint in routes(world.app):
        if (method, path) in PUBLIC:
            assert rule_of(endpoint) is None, f"{method} {path} is public yet declares a rule"
            continue
        row = ROWS.get((method, path))
        if row is None:
            missing.append(f"{method} {path}")
            continue
        rule = rule_of(endpoint)
        declared = None if rule is None else ("worker:" if rule.worker else "") + rule.level
        if declared != row:
            wrong.append(f"{method} {path}: declares {declared}, the matrix says {row}")
    assert not missing, f"routes without a row in the access matrix: {missing}"
    assert not wrong, wrong
    served = {(m, p) for m, p, _ in routes(world.app)}
    assert set(ROWS) <= served, f"rows for routes the app no longer serves: {set(ROWS) - served}"


def test_the_matrix(world):
    """Every route x every caller answers as its row says."""
    surprises = []
    for method, path, _ in routes(world.app):
        if (method, path) in PUBLIC:
            continue
        reference = call(world, "root", method, path)
        if ROWS[(method, path)] not in ("open", "self"):
            assert reference not in (401, 403, "login"), f"the site admin is refused {method} {path}: {reference}"
        if "{" in path and ROWS[(method, path)] in NEED:  # names one of alpha's things: bo's 404 must mean 'hidden'
            assert reference != 404, f"{method} {path} answers the site admin 404: the matrix would prove nothing"
        for caller in CALLERS:
            got, want = call(world, caller, method, path), expected(caller, method, path, reference)
            if got != want:
                surprises.append(f"{method} {path} as {caller}: {got}, expected {want}")
    assert not surprises, "\n".join(surprises)


def test_another_projects_thing_and_one_that_does_not_exist_answer_alike(world):
    """bo (member of beta, asking in beta) calls each route that names one of alpha's things, then the same route
    with ids no thing has: with the matrix's bad bodies, and a role too low for some routes, both must answer 404,
    or the answer tells him which ids exist in projects he cannot see."""
    told = []
    for method, path, _ in routes(world.app):
        if (method, path) in PUBLIC or not re.search(r"\{(run|sweep|search|prediction)_id\}|/compare$", path):
            continue
        foreign = call(world, "bo", method, path, project="beta")
        nothing = call(world, "bo", method, path, ids=dict.fromkeys(world.ids, 999999), project="beta")
        if (foreign, nothing) != (404, 404):
            told.append(f"{method} {path}: {foreign} for alpha's, {nothing} for none")
    headers = {"Authorization": f"Bearer {world.tokens['write']}"}  # mia's: she sees alpha, not beta
    client, (run, run2) = TestClient(world.app), (world.ids["run"], world.ids["run2"])
    assert client.get(f"/api/v1/compare?ids={run},{run2}&baseline=x", headers=headers).status_code == 422
    for ids in (f"{run},{run2}", "999998,999999"):  # a bad baseline does not tell them apart either
        answer = world.clients["bo"][0].get(f"/api/v1/compare?ids={ids}&baseline=x")
        assert answer.status_code == 404, (ids, answer.text)
    assert not told, "\n".join(told)


@pytest.mark.parametrize("method,path", sorted(PUBLIC))
def test_public_routes_answer_anyone(world, method, path):
    assert TestClient(world.app).request(method, path).status_code == 200


def _origin() -> str:
    """The outermost fitboard function on the stack: whose step checked a connection out."""
    return next((f.name for f in traceback.extract_stack() if "/fitboard/app/" in f.filename), "?")


def test_a_browser_refused_gets_a_page_saying_why_and_a_script_the_json(world):
    """A viewer's Cancel, a member raising a priority, a forged form, a bad id, a path no route serves: a browser
    (it asks for HTML) gets a page with the reason and a way back, never the API's JSON; other clients keep JSON."""
    run_id = world.ids["live"]
    page = {"Accept": "text/html,application/xhtml+xml", "Referer": f"http://testserver/runs/{run_id}"}
    vera, vera_csrf = world.clients["vera"]
    mia, mia_csrf = world.clients["mia"]
    cases = [
        (vera, f"/runs/{run_id}/cancel", {"csrf_token": vera_csrf}, 403, "this needs the member role in project"),
        (mia, f"/runs/{run_id}/priority", {"csrf_token": mia_csrf, "priority": "high"}, 403,
         "only an admin may change the priority of a run someone else launched"),
        (mia, f"/runs/{run_id}/cancel", {"csrf_token": "forged"}, 403, "missing or invalid CSRF token"),
        (mia, "/runs/abc/cancel", {"csrf_token": mia_csrf}, 422, "path.run_id"),
        (mia, "/no-such-page/<b>x</b>", None, 404, "There is no page at /no-such-page/&lt;b&gt;x&lt;/b&gt;."),
    ]
    for client, path, form, code, reason in cases:
        r = client.post(path, data=form, headers=page) if form else client.get(path, headers=page)
        assert r.status_code == code and r.headers["content-type"].startswith("text/html"), (path, r.text[:300])
        assert reason in r.text and "<b>" not in r.text, (path, r.text[-1500:])
        assert f'<a href="/runs/{run_id}">Back</a>' in r.text  # where the form was
        script = client.post(path, data=form) if form else client.get(path)  # Accept: */*
        assert script.status_code == code and "detail" in script.json(), path
    assert world.clients["root"][0].get(f"/api/v1/runs/{run_id}").json()["status"] == "queued"  # nothing changed


def test_the_run_page_offers_only_the_priorities_its_reader_may_set(world):
    """Admins any; a member their own run's priority and lower; nobody else a form (may_set_priority's rule, through
    priorities_allowed, so the page cannot offer what the POST refuses)."""
    mia = {"Authorization": f"Bearer {world.tokens['write']}"}
    own = world.clients["root"][0].post("/api/v1/runs?project=alpha", json=tiny_recipe(name="mia-own"),
                                        headers=mia).json()["id"]
    others = world.ids["live"]  # launched by root

    def offered(who: str, run_id: int) -> list[str] | None:
        page = world.clients[who][0].get(f"/runs/{run_id}").text
        assert 'id="queue-position"' in page, page[-2000:]  # queued: the place-in-line card is there
        form = re.search(rf'action="/runs/{run_id}/priority".*?</form>', page, re.S)
        return re.findall(r"<option[^>]*>(\w+)</option>", form[0]) if form else None

    assert offered("root", others) == ["high", "normal", "low"] and offered("ada", own) == ["high", "normal", "low"]
    assert offered("mia", own) == ["normal", "low"]
    assert offered("mia", others) is None and offered("vera", own) is None
    r = world.clients["mia"][0].post(f"/runs/{own}/priority", data={"csrf_token": world.clients["mia"][1],
                                                                    "priority": "low"}, follow_redirects=False)
    assert r.status_code == 303
    assert offered("mia", own) is None  # at low there is nothing lower to offer


def test_a_members_priority_change_is_checked_in_the_routes_session(world):
    """may_set_priority reads the run (who launched it, its priority) for a member: in the session the access check
    handed to the route, not one of its own. The route's other sessions are its own by design: the queue line's (it
    reads every project's runs) and the audit row's (written after the answer)."""
    mia = {"Authorization": f"Bearer {world.tokens['write']}"}
    run_id = world.clients["root"][0].post("/api/v1/runs?project=alpha", json=tiny_recipe(name="mine"),
                                           headers=mia).json()["id"]
    checkouts = []
    listen = lambda *_: checkouts.append(_origin())  # noqa: E731
    event.listen(world.app.state.engine.pool, "checkout", listen)
    try:
        # a member lowers (or keeps) their own run's priority, never raises it; the first request may also write
        # the token's last use, after which the check's session is closed, not handed on
        for i, (priority, code) in enumerate((("low", 200), ("low", 200), ("high", 403))):
            checkouts.clear()
            r = world.clients["root"][0].patch(f"/api/v1/runs/{run_id}", json={"priority": priority}, headers=mia)
            assert r.status_code == code, r.text
            assert i == 0 or ("_checked" in checkouts and "checked_patch" not in checkouts), checkouts
            assert world.clients["root"][0].get(f"/api/v1/runs/{run_id}").json()["priority"] == "low"  # as shown
    finally:
        event.remove(world.app.state.engine.pool, "checkout", listen)


def test_a_request_takes_one_connection_and_every_route_gives_it_back(sqlite_url, tmp_path, data_root):
    """The access check's session is the route's own: a list checks out one connection, not one for the check and
    one for the route; and every route gives it back, whether it answers, refuses, or is refused before the step
    that takes the session over (a 404, a 422 for a bad path, query or body)."""
    app = create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root))
    pool, checkouts = app.state.engine.pool, []
    event.listen(pool, "checkout", lambda *_: checkouts.append(_origin()))
    client = TestClient(app, follow_redirects=False)  # no lifespan: no reconciler thread shares the pool
    assert client.get("/api/v1/runs").json()["total"] == 0
    checkouts.clear()  # the first request also asked, in front of the routes, whether anyone has an account
    assert client.get("/api/v1/runs").json()["total"] == 0
    assert len(checkouts) == 1
    assert client.get("/api/v1/runs?limit=0").status_code == 422
    answered = set()
    for method, path, _ in routes(app):
        filled = re.sub(r"\{(\w+)\}", lambda m: "0" if m[1] == "k" else "999999" if m[1].endswith("_id") else "nope",
                        path)
        for target in (filled, filled.replace("999999", "x")):
            answered.add(client.request(method, target).status_code)
            assert pool.checkedout() == 0, f"{method} {target} kept its connection"
    assert {200, 404, 422} <= answered
    # A dependency that refuses the request before the route's session is asked for: the check's session, handed
    # on, is never taken, and the access dependency ends it (the request's state is kept, so that the garbage
    # collector cannot give the connection back instead).
    kept = []

    def refuse(request: Request) -> None:
        kept.append(request.state)
        raise HTTPException(409, "refused before the session")

    @app.get("/refused-first")
    @needs("read")
    def refused_first(access: AccessDep, refused=Depends(refuse), session: SessionDep = None) -> dict:
        return {}
    assert client.get("/refused-first").status_code == 409
    assert kept and pool.checkedout() == 0


def test_a_bulk_delete_of_another_projects_runs_tells_nothing_and_deletes_nothing(world):
    """/runs/bulk takes its ids from the form, past the access check: an admin of beta ticking alpha's ids must read
    "not found" for them, as for ids nobody has (it said "run 1 is succeeded", "run 3 is queued"), and alpha keeps
    every row."""
    from fitboard.app.services import people
    from fitboard.app.store.db import session_scope
    from tests.people_world import PASSWORD, log_in

    with session_scope(world.app.state.engine) as s:
        people.add_person(s, "cy", PASSWORD)
        people.grant(s, "beta", "cy", "admin")
    cy, csrf = log_in(world.app, "cy")
    root = world.clients["root"][0]
    rows_before = root.get(f"/api/v1/runs/{world.ids['run']}/epochs").json()
    notices = []
    try:
        for run_id in (world.ids["run"], world.ids["live"], 999999):
            r = cy.post("/runs/bulk?project=beta", data={"csrf_token": csrf, "action": "delete", "ids": str(run_id)})
            assert r.status_code == 303, r.text
            notices.append(re.search(r"Not done: ([^<]*)", cy.get("/runs?project=beta").text)[1])
    finally:
        cy.__exit__(None, None, None)
    assert notices == [f"run {world.ids['run']} not found.", f"run {world.ids['live']} not found.",
                       "run 999999 not found."]
    assert root.get(f"/api/v1/runs/{world.ids['run']}/epochs").json() == rows_before
    assert root.get(f"/api/v1/runs/{world.ids['live']}").json()["status"] == "queued"
