"""The web layer under a hostile probe: a 500 keeps the connection, every page write checks its CSRF token (the
routes enumerated from the app, not listed here), every request body is typed with its bounds in the schema, what a
worker writes into a run is redacted, and the CLI prints no raw control characters."""
from __future__ import annotations

import re
import shutil
import sqlite3

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from fitboard.app.core.settings import Settings
from fitboard.app.web.app import create_app
from tests.helpers import TOKEN, tiny_recipe
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403


@pytest.fixture
def settings(tmp_path, sqlite_url, data_root) -> Settings:
    return Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root)


def local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried this answer."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def test_a_500_answers_in_json_and_keeps_the_connection(settings, sqlite_url):
    """A real failing dependency: the database lost a table under the running server."""
    with live_app(settings) as (base, app), httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/api/v1/workers").status_code == 200
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
            db.execute("ALTER TABLE worker RENAME TO worker_gone")
        broken = client.get("/api/v1/workers")
        assert broken.status_code == 500 and broken.json() == {
            "detail": "internal error; the server log has the details"}
        assert broken.headers["x-content-type-options"] == "nosniff"
        after = client.get("/api/v1/runs")  # the same kept-alive connection: no reset, no new connection
        assert after.status_code == 200 and local_port(after) == local_port(broken)


def page_post_routes(app) -> list[str]:
    """The path of every POST route outside /api, as the app routes them: the page forms."""
    return [c.path for c in iter_route_contexts(app.routes)
            if "POST" in (getattr(c.original_route, "methods", None) or ()) and not c.path.startswith("/api/")]


def logged_in_client(app) -> tuple[TestClient, str]:
    """A browser logged in with the token, and its session's CSRF token."""
    client = TestClient(app)
    page = client.get("/login").text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    r = client.post("/login", data={"csrf_token": csrf, "token": TOKEN, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client, csrf


def test_every_page_post_refuses_a_logged_in_browser_without_its_csrf_token(settings):
    app = create_app(settings.model_copy(update={"api_token": TOKEN}))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as setup:
        run = setup.post("/api/v1/runs", json=tiny_recipe(), headers=bearer).json()
        sweep = setup.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"stages[0].mixup": [0.2]},
                                                   "seeds": [0, 1, 2]}, headers=bearer).json()
        search = setup.post("/api/v1/searches", headers=bearer, json={
            "base": tiny_recipe(), "space": {"stages[0].bs": {"int": [16, 32]}}, "options": {"max_trials": 2}}).json()
    routes = page_post_routes(app)
    assert len(routes) >= 10 and "/searches/{search_id}/cancel" in routes
    # every placeholder names a thing that exists (an id of nothing answers 404 in the access check, as another
    # project's thing does, before any form is read); a project by its name
    names = {"project": "default", "run_id": run["id"], "sweep_id": sweep["id"], "search_id": search["id"]}
    client, csrf = logged_in_client(app)
    with client:
        for route in routes:
            # an id the access check does not look up (a token's): any number, the form's CSRF check answers first
            path = re.sub(r"\{([^}]+)\}", lambda m: str(names.get(m[1], run["id"])), route)
            for data in ({}, {"csrf_token": "forged"}):
                r = client.post(path, data=data, follow_redirects=False)
                assert r.status_code == 403 and "CSRF" in r.text, (route, data, r.status_code, r.text[:300])
        assert client.get(f"/api/v1/runs/{run['id']}").json()["status"] == "queued"  # no write went through
        ok = client.post(f"/runs/{run['id']}/cancel", data={"csrf_token": csrf}, follow_redirects=False)
        assert ok.status_code == 303  # the same form with its token works


def body_schemas(doc: dict) -> list[tuple[str, dict]]:
    """(operation, JSON body schema) of every API operation that takes one."""
    out = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                out.append((f"{method.upper()} {path}", content["application/json"]["schema"]))
    return out


def unbounded(schema: dict, doc: dict, where: str, seen: set) -> list[str]:
    """Every place in a schema without a stated bound: an object open to unknown fields, a map or array without
    a count, a string without a length, an integer without a range."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        return unbounded(doc["components"]["schemas"][name], doc, f"{where}->{name}", seen)
    found = []
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            found += unbounded(sub, doc, f"{where}|{i}", seen)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        extra = schema.get("additionalProperties", True)
        maps = [extra] if isinstance(extra, dict) else []
        maps += list(schema.get("patternProperties", {}).values())
        if maps:  # a map: keys the caller chooses, so a bound on their number
            found += [f"{where}: no maxProperties"] if "maxProperties" not in schema else []
            for sub in maps:
                found += unbounded(sub, doc, f"{where}{{}}", seen)
        elif extra is True:
            found.append(f"{where}: unknown fields accepted")
        for name, sub in schema.get("properties", {}).items():
            found += unbounded(sub, doc, f"{where}.{name}", seen)
    elif kind == "array":
        found += [f"{where}: no maxItems"] if "maxItems" not in schema else []
        found += unbounded(schema.get("items", {}), doc, f"{where}[]", seen)
    elif kind == "string" and not ({"maxLength", "enum", "const", "format"} & set(schema)):
        found.append(f"{where}: no maxLength")
    elif kind == "integer" and not ({"maximum", "exclusiveMaximum"} & set(schema)):
        found.append(f"{where}: no maximum")
    return found


def test_every_request_body_is_typed_closed_and_bounded_in_the_schema(settings):
    doc = create_app(settings).openapi()
    bodies = body_schemas(doc)
    assert {"POST /api/v1/searches", "POST /api/v1/tracked", "POST /api/v1/tracked/{run_id}/rows",
            "POST /api/v1/tracked/{run_id}/finish"} <= {op for op, _ in bodies}
    problems = [p for op, schema in bodies for p in unbounded(schema, doc, op, set())]
    assert problems == []


def test_what_a_worker_writes_into_a_run_hides_the_mirrors_credentials(tmp_path, sqlite_url, data_root, monkeypatch):
    from fitboard.app.services import runs
    from fitboard.app.services.queue import TRAIN_TASK
    from fitboard.app.store.db import session_scope
    from fitboard.worker.factory import create_worker
    from tests.served import free_port

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached weights: the run must download them
    mirror = f"http://user:SECRETPASS@127.0.0.1:{free_port()}/w/?token=SECRETTOKEN"  # nothing listens there
    settings = Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root, broker_url=None,
                        num_workers=0, worker_name="in-process:1", download_weights=True, weights_mirror=mirror,
                        max_attempts=1)
    worker = create_worker(settings)
    try:
        with session_scope(worker.engine) as session:
            run_id = runs.submit(session, worker.publisher, tiny_recipe(pretrained=True), data_root)[0].id
        assert worker.celery.tasks[TRAIN_TASK].run(run_id) == "failed"
    finally:
        worker.engine.dispose()
    with TestClient(create_app(settings)) as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        seen = [run["error"], client.get(f"/api/v1/runs/{run_id}/attempts").text, client.get(f"/runs/{run_id}").text]
    assert "127.0.0.1" in run["error"] and "***" in run["error"]  # the error still says where it tried
    for text in seen:
        assert "SECRETPASS" not in text and "SECRETTOKEN" not in text and "user:" not in text


def test_the_cli_prints_no_raw_control_characters(tmp_path, sqlite_url, data_root, capsys, monkeypatch):
    from fitboard.app.store.db import make_engine, session_scope
    from fitboard.app.store.runs import create_run
    from fitboard.worker.cli import main

    engine = make_engine(sqlite_url)
    with session_scope(engine) as session:  # stored before names were checked (or written past the API)
        create_run(session, tiny_recipe(), name="evil\x1b]0;pwned\x07\r\u202eexe.txt")
    engine.dispose()
    monkeypatch.setenv("FITBOARD_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FITBOARD_HOME", str(tmp_path))
    assert main(["runs", "--wide"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\x07" not in out
    assert r"evil\x1b]0;pwned\x07\r\u202eexe.txt" in out  # shown, escaped
    shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)
