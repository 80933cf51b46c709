"""People, projects, roles, tokens and the audit log, as a team meets them: the CLI, logins, lists per project."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import subprocess
import sys

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select

from fitboard.app.core.settings import Settings
from fitboard.app.services import people
from fitboard.app.store.db import alembic_config, make_engine, session_scope, upgrade
from fitboard.app.store.models import Run, Worker
from fitboard.app.web.app import create_app
from fitboard.app.web.sse import resume_point
from tests.helpers import BEARER, TOKEN, tiny_recipe
from tests.people_world import CSRF, PASSWORD
from tests.store_fixtures import *  # noqa: F401,F403


def fitboard(url: str, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The fitboard CLI in a fresh process, on this test's database."""
    return subprocess.run([sys.executable, "-m", "fitboard.worker.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=120, env={**os.environ, "FITBOARD_DATABASE_URL": url})


def add(url: str, *steps) -> list[str]:
    """Run people steps in-process on the database at url (as the CLI does; tests of the CLI itself are below);
    the tokens created, in order."""
    engine, made = make_engine(url), []
    with session_scope(engine) as s:
        for step, *args in steps:
            if step == "person":
                people.add_person(s, args[0], PASSWORD, site_admin=bool(args[1:]))
            elif step == "project":
                people.add_project(s, args[0])
            elif step == "grant":
                people.grant(s, *args)
            elif step == "token":
                made.append(people.create_token(s, people.person(s, args[0]), "laptop")[0])
            elif step == "disable":
                people.set_disabled(s, args[0])
    engine.dispose()
    return made


@pytest.fixture
def team(sqlite_url, tmp_path, data_root):
    """root (site admin), mia (member of alpha), bo (member of beta), mia's and bo's tokens; the app on it."""
    mia, bo = add(sqlite_url, ("person", "root", "admin"), ("person", "mia"), ("person", "bo"), ("project", "alpha"),
                  ("project", "beta"), ("grant", "alpha", "mia", "member"), ("grant", "beta", "bo", "member"),
                  ("token", "mia"), ("token", "bo"))
    settings = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)
    with TestClient(create_app(settings)) as client:
        yield client, {"mia": mia, "bo": bo}, sqlite_url


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_each_person_sees_only_their_projects_and_every_run_says_who_launched_it(team):
    client, tokens, _ = team
    mine = client.post("/api/v1/runs", json=tiny_recipe(name="mia-run"), headers=bearer(tokens["mia"]))
    assert mine.status_code == 201, mine.text
    assert mine.json()["project"] == "alpha" and mine.json()["launched_by"] == "mia"
    theirs = client.post("/api/v1/runs?project=beta", json=tiny_recipe(name="bo-run"), headers=bearer(tokens["bo"]))
    assert theirs.json()["project"] == "beta" and theirs.json()["launched_by"] == "bo"
    listed = client.get("/api/v1/runs", headers=bearer(tokens["mia"])).json()
    assert [r["name"] for r in listed["items"]] == ["mia-run"] and listed["total"] == 1
    assert listed["items"][0]["launched_by"] == "mia"
    # bo cannot see alpha at all: its run, its list, its compare all answer as if nothing were there
    run_id, other = mine.json()["id"], theirs.json()["id"]
    assert client.get(f"/api/v1/runs/{run_id}", headers=bearer(tokens["bo"])).status_code == 404
    assert client.get("/api/v1/runs?project=alpha", headers=bearer(tokens["bo"])).status_code == 404
    assert client.get(f"/api/v1/runs/{run_id}/events", headers=bearer(tokens["bo"])).status_code == 404
    assert client.get(f"/api/v1/compare?ids={other},{run_id}", headers=bearer(tokens["bo"])).status_code == 404
    assert client.get(f"/api/v1/runs/{run_id + 1000}", headers=bearer(tokens["bo"])).json() == \
        {"detail": f"run {run_id + 1000} not found"}
    assert client.get(f"/api/v1/runs/{run_id}", headers=bearer(tokens["bo"])).json() == \
        {"detail": f"run {run_id} not found"}  # word for word what a run that does not exist answers
    assert client.get("/api/v1/me", headers=bearer(tokens["bo"])).json()["projects"] == {"beta": "member"}
    # the site token (FITBOARD_API_TOKEN) is not set here; the site admin root sees both projects by name
    assert client.get("/api/v1/projects", headers=bearer(tokens["mia"])).json() == [{"name": "alpha",
                                                                                     "role": "member"}]


def test_a_foreign_dataset_name_and_a_foreign_workers_run_are_not_told(team, sqlite_url):
    client, tokens, _ = team
    spec = {"layout": "csv", "path": "digits", "images": "train_images", "label_map": "label_num_to_disease_map.json"}
    # mia is only a member: registering needs admin
    assert client.post("/api/v1/datasets", json={"name": "alpha-digits", "spec": spec},
                       headers=bearer(tokens["mia"])).status_code == 403
    add(sqlite_url, ("grant", "alpha", "mia", "admin"))
    assert client.post("/api/v1/datasets", json={"name": "alpha-digits", "spec": spec},
                       headers=bearer(tokens["mia"])).status_code == 201
    assert "alpha-digits" in [d["name"] for d in client.get("/api/v1/datasets", headers=bearer(tokens["mia"])).json()]
    assert "alpha-digits" not in [d["name"] for d in client.get("/api/v1/datasets",
                                                                headers=bearer(tokens["bo"])).json()]
    assert client.get("/api/v1/datasets/alpha-digits", headers=bearer(tokens["bo"])).status_code == 404
    # a worker training alpha's run: bo sees the worker, not what it trains
    run = client.post("/api/v1/runs", json=tiny_recipe(), headers=bearer(tokens["mia"])).json()["id"]
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        s.add(Worker(name="gpu0:1", host="gpu0", pid=1, current_run_id=run))
    engine.dispose()
    seen = {name: client.get("/api/v1/workers", headers=bearer(tokens[name])).json() for name in ("mia", "bo")}
    assert [w["current_run_id"] for w in seen["mia"]] == [run] and [w["current_run_id"] for w in seen["bo"]] == [None]
    page = client.get("/workers", headers=bearer(tokens["bo"])).text
    assert "gpu0:1" in page and f"/runs/{run}" not in page


def test_the_queue_keeps_a_hidden_runs_place_and_tells_nothing_else_of_it(team):
    """bo sees that a run of another project waits ahead of his, never its name, id, person, project or when it was
    submitted."""
    client, tokens, _ = team
    assert client.post("/api/v1/runs", json=tiny_recipe(), headers=bearer(tokens["mia"])).status_code == 201
    assert client.post("/api/v1/runs?project=beta", json=tiny_recipe(), headers=bearer(tokens["bo"])).status_code == 201
    hidden, mine = client.get("/api/v1/queue", headers=bearer(tokens["bo"])).json()[0]["runs"]
    assert mine["person"] == "bo" and mine["waiting_since"] is not None
    assert {k for k, v in hidden.items() if v is not None} <= {"position", "priority", "sent", "held_by_quota",
                                                                "estimated_start"}, hidden


def test_a_superscript_digit_where_a_number_goes_is_refused_never_a_500(team):
    """'²' passes str.isdigit() and int() refuses it: each id, count and day field that checked with isdigit before
    converting answered 500; a 4xx now, or the field's default."""
    client, _, _ = team
    csrf = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"name": "mia", "password": PASSWORD, "csrf_token": csrf})
    run = client.post("/api/v1/runs", json=tiny_recipe(), headers={"X-CSRF-Token": csrf}).json()["id"]
    two = "\u00b2"
    assert resume_point(two) == 0  # a Last-Event-ID that is no row ordinal: the stream starts over
    answers = {
        "GET /api/v1/runs/²": client.get(f"/api/v1/runs/{two}"), "GET /runs/²": client.get(f"/runs/{two}"),
        "GET /compare": client.get(f"/compare?ids={run},{run}&baseline={two}"),
        "POST /runs/bulk": client.post("/runs/bulk", data={"csrf_token": csrf, "action": "archive", "ids": two}),
        "POST ablate": client.post(f"/runs/{run}/ablate", data={"csrf_token": csrf, "seeds": two}),
        "POST search": client.post(f"/runs/{run}/search", data={"csrf_token": csrf, "max_trials": two}),
        "POST /runs/new": client.post("/runs/new", data={"csrf_token": csrf, "clone_of": two}),
        "POST /account/tokens": client.post("/account/tokens", data={"csrf_token": csrf, "expires_days": two}),
    }
    assert {k: r.status_code for k, r in answers.items() if not 200 <= r.status_code < 500} == {}


def test_a_token_label_refuses_control_and_bidi_characters(team):
    """`fitboard tokens list` prints a label in a tab-separated row: a line break in it forged a row (another
    person's, a site admin's) in the site admin's terminal; labels are refused such characters as names are."""
    client, tokens, _ = team
    for label in ("laptop\nroot\tsite-admin", "\x1b[2Jx", "abc\u202etxt"):
        r = client.post("/api/v1/tokens", json={"label": label, "scope": "read"}, headers=bearer(tokens["mia"]))
        assert r.status_code == 422 and [p["loc"] for p in r.json()["detail"]] == ["label"], r.text
    csrf = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"name": "mia", "password": PASSWORD, "csrf_token": csrf})
    page = client.post("/account/tokens", data={"csrf_token": csrf, "label": "a\nb", "scope": "read"})
    assert page.status_code == 422 and "control" in page.text
    assert [t["label"] for t in client.get("/api/v1/tokens", headers=bearer(tokens["mia"])).json()] == ["laptop"]


def test_the_queue_page_names_only_the_quotas_of_projects_the_caller_sees(sqlite_url, tmp_path, data_root):
    """FITBOARD_PROJECT_QUOTAS names projects: bo (member of beta) must not learn from the queue page that alpha
    exists; the site admin reads every quota."""
    root, bo = add(sqlite_url, ("person", "root", "admin"), ("person", "bo"), ("project", "alpha"),
                   ("project", "beta"), ("grant", "beta", "bo", "member"), ("token", "root"), ("token", "bo"))
    settings = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root, project_quotas="alpha=1,beta=2")
    with TestClient(create_app(settings)) as client:
        page = client.get("/queue", headers=bearer(bo)).text
        assert "beta 2. A run is sent" in page and "alpha" not in page
        assert "alpha 1, beta 2" in client.get("/queue", headers=bearer(root)).text
        assert "the person who used the fewest GPU-seconds" in page
    by_project = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root, fair_share="project")
    with TestClient(create_app(by_project)) as client:
        assert "the project that used the fewest GPU-seconds" in client.get("/queue", headers=bearer(bo)).text


def test_dataset_names_are_per_project_and_each_projects_run_uses_its_own(team, sqlite_url):
    client, tokens, _ = team
    add(sqlite_url, ("grant", "alpha", "mia", "admin"), ("grant", "beta", "bo", "admin"))
    labelled = {"layout": "csv", "path": "digits", "images": "train_images",
                "label_map": "label_num_to_disease_map.json"}
    plain = {"layout": "csv", "path": "digits", "images": "train_images"}  # the digits' numbers as labels
    assert client.post("/api/v1/datasets", json={"name": "shared", "spec": labelled},
                       headers=bearer(tokens["mia"])).status_code == 201
    # beta may use the name alpha uses, and learns nothing of alpha's dataset by doing so
    theirs = client.post("/api/v1/datasets", json={"name": "shared", "spec": plain}, headers=bearer(tokens["bo"]))
    assert theirs.status_code == 201, theirs.text
    again = client.post("/api/v1/datasets", json={"name": "shared", "spec": plain}, headers=bearer(tokens["bo"]))
    assert again.status_code == 409  # within one project a name is still taken
    seen = {who: client.get("/api/v1/datasets/shared", headers=bearer(tokens[who])).json()["spec"].get("label_map")
            for who in ("mia", "bo")}
    assert seen == {"mia": "label_num_to_disease_map.json", "bo": None}
    runs = {}
    for who in ("mia", "bo"):
        r = client.post("/api/v1/runs", json=tiny_recipe(dataset="shared"), headers=bearer(tokens[who]))
        assert r.status_code == 201, r.text
        runs[who] = r.json()
    assert {w: (r["project"], r["dataset"]) for w, r in runs.items()} == {"mia": ("alpha", "shared"),
                                                                           "bo": ("beta", "shared")}
    # what a worker trains: the dataset of the run's own project, looked up as worker.tasks does
    from types import SimpleNamespace

    from fitboard.worker.tasks import dataset_lookup
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        projects = {w: s.get(Run, r["id"]).project_id for w, r in runs.items()}
    used = {w: dataset_lookup(SimpleNamespace(engine=engine), pid)("shared").label_map for w, pid in projects.items()}
    engine.dispose()
    assert used == {"mia": "label_num_to_disease_map.json", "bo": None}


def test_runs_of_a_search_and_of_a_sweep_carry_its_launcher_and_project(team, sqlite_url, tmp_path):
    from fitboard.app.services import search_driver
    from fitboard.app.services.queue import Publisher, make_celery
    from tests.helpers import finish_by_hand

    client, tokens, _ = team
    base = tiny_recipe(name="srch")
    body = {"base": base, "space": {"stages[*].lr": [base["stages"][0]["lr"]]},  # one configuration: asked again,
            "options": {"max_trials": 2, "max_parallel": 1, "k": 1, "seeds": 3}}  # it is a duplicate, then verify
    search = client.post("/api/v1/searches", json=body, headers=bearer(tokens["mia"]))
    assert search.status_code == 201, search.text
    trial = search.json()["trials"][0]["run_id"]  # queued by the search driver, outside mia's request
    engine = make_engine(sqlite_url)
    finish_by_hand(engine, trial, acc=0.8)
    search_driver.drive(engine, Publisher(make_celery(Settings(home=tmp_path, database_url=sqlite_url)), queue="q"))
    engine.dispose()
    got = client.get(f"/api/v1/searches/{search.json()['id']}", headers=bearer(tokens["mia"])).json()
    assert got["status"] == "verifying", got
    sweep = client.get(f"/api/v1/sweeps/{got['verify']['sweep_id']}", headers=bearer(tokens["mia"])).json()
    verify_runs = [r["id"] for v in sweep["variants"] for r in v["runs"]]
    sweep_runs = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"stages[0].mixup": [0.2]},
                                                     "seeds": [0, 1, 2]}, headers=bearer(tokens["mia"]))
    assert sweep_runs.status_code == 201, sweep_runs.text
    ids = [trial, *verify_runs, *(r["id"] for r in sweep_runs.json()["queued"])]
    assert len(ids) == 1 + 3 + 6
    owners = {(r["project"], r["launched_by"]) for r in
              (client.get(f"/api/v1/runs/{i}", headers=bearer(tokens["mia"])).json() for i in ids)}
    assert owners == {("alpha", "mia")}
    assert client.get(f"/api/v1/runs/{verify_runs[0]}", headers=bearer(tokens["bo"])).status_code == 404


def test_a_made_up_person_token_gets_401_on_its_headers_before_the_body_is_read(team):
    client, tokens, _ = team  # accounts exist and no site token is set: the gate must check a person's token itself

    async def ask(authorization: str | None, body: bytes | None) -> tuple[int, bool]:
        """POST /api/v1/runs straight into the ASGI app: its status, and whether the app asked for the body (body
        None: the client never sends it)."""
        asked, sent = [], []

        async def receive():
            asked.append(True)
            if body is None:
                await asyncio.sleep(3600)
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        headers = [(b"host", b"testserver"), (b"content-type", b"application/json"),
                   (b"content-length", str(len(body or b"x" * 1000)).encode())]
        headers += [(b"authorization", authorization.encode())] if authorization else []
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/v1/runs", "raw_path": b"/api/v1/runs", "root_path": "",
                 "query_string": b"", "headers": headers, "client": ("127.0.0.1", 5000),
                 "server": ("testserver", 80)}
        await asyncio.wait_for(client.app(scope, receive, send), 20)
        return sent[0]["status"], bool(asked)

    made_up = "fbt_" + "A" * 43  # shaped like a person's token, held by nobody
    assert asyncio.run(ask(f"Bearer {made_up}", None)) == (401, False)
    assert asyncio.run(ask("Bearer not-a-token-at-all", None)) == (401, False)
    assert asyncio.run(ask(None, None)) == (401, False)
    revoked = client.post("/api/v1/tokens", json={"label": "gone"}, headers=bearer(tokens["mia"])).json()
    client.delete(f"/api/v1/tokens/{revoked['id']}", headers=bearer(tokens["mia"]))
    assert asyncio.run(ask(f"Bearer {revoked['token']}", None)) == (401, False)
    assert asyncio.run(ask(f"Bearer {tokens['mia']}", b"{}")) == (422, True)  # a real one reaches the route


def test_the_members_page_grants_only_with_its_csrf_token_and_says_what_is_wrong(team, sqlite_url):
    client, tokens, _ = team
    add(sqlite_url, ("grant", "alpha", "mia", "admin"))
    csrf = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"name": "mia", "password": PASSWORD, "csrf_token": csrf})
    url = "/projects/alpha/members"
    assert 'href="/projects/alpha/members"' in client.get("/runs").text  # the top bar's link for alpha's admins
    forged = client.post(url, data={"person": "bo", "role": "admin"}, follow_redirects=False)
    assert forged.status_code == 403  # no CSRF token: nothing granted
    bad_role = client.post(url, data={"csrf_token": csrf, "person": "bo", "role": "owner"})
    nobody = client.post(url, data={"csrf_token": csrf, "person": "nobody", "role": "viewer"})
    assert (bad_role.status_code, nobody.status_code) == (422, 422)
    assert "role: one of viewer, member, admin" in bad_role.text and "person: no account is named" in nobody.text
    assert client.get("/api/v1/me", headers=bearer(tokens["bo"])).json()["projects"] == {"beta": "member"}
    done = client.post(url, data={"csrf_token": csrf, "person": "bo", "role": "viewer"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == url
    assert client.get("/api/v1/me", headers=bearer(tokens["bo"])).json()["projects"] == {"alpha": "viewer",
                                                                                         "beta": "member"}
    assert re.findall(r'data-person="(\w+)"', client.get(url).text) == ["bo", "mia"]
    assert client.get("/projects/beta/members", follow_redirects=False).status_code == 404  # not hers to see


def test_the_cli_adds_people_and_projects_and_its_revoke_holds_at_the_next_request(team):
    client, tokens, url = team
    added = fitboard(url, "users", "add", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0 and added.stdout.strip() == "added ada", added.stderr
    assert fitboard(url, "projects", "grant", "alpha", "ada", "viewer").returncode == 0
    created = fitboard(url, "tokens", "create", "ada", "--name", "ci", "--scope", "read", "--expires", "7")
    token = created.stdout.strip().splitlines()[-1]  # the token alone on the last line
    assert created.returncode == 0 and token.startswith("fbt_") and len(token) > 40
    assert client.get("/api/v1/me", headers=bearer(token)).json() == {
        "name": "ada", "site_admin": False, "via": "token", "scope": "read", "projects": {"alpha": "viewer"}}
    listed = fitboard(url, "tokens", "list", "ada").stdout
    assert "ci\tread" in listed and token not in listed
    revoked = fitboard(url, "tokens", "revoke", token)  # another process: every web process's cache must notice
    assert revoked.returncode == 0, revoked.stderr
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    refused = fitboard(url, "projects", "grant", "alpha", "nobody", "member")
    assert refused.returncode == 1 and "person 'nobody' not found" in refused.stderr


def test_a_disabled_person_stops_at_once(team):
    client, tokens, url = team
    csrf = CSRF.search(client.get("/login").text).group(1)
    assert client.post("/login", data={"name": "bo", "password": PASSWORD, "csrf_token": csrf},
                       follow_redirects=False).status_code == 303
    assert client.get("/runs", follow_redirects=False).status_code == 200
    assert client.get("/api/v1/runs", headers=bearer(tokens["bo"])).status_code == 200  # now cached
    add(url, ("disable", "bo"))
    assert client.get("/runs", follow_redirects=False).headers["location"].startswith("/login")
    assert client.get("/api/v1/runs", headers=bearer(tokens["bo"])).status_code == 401


def test_logins_are_throttled_per_account_and_per_address(team):
    client, _, _ = team
    app = client.app

    def attempt(address: str, name: str, password: str) -> int:
        c = TestClient(app, client=(address, 5000), follow_redirects=False)
        csrf = CSRF.search(c.get("/login").text).group(1)
        return c.post("/login", data={"name": name, "password": password, "csrf_token": csrf}).status_code

    limit = app.state.settings.auth_failures_per_minute
    # a spray of guesses at mia from many addresses: after `limit`, even her right password waits
    assert [attempt(f"10.0.0.{i}", "mia", "wrong password") for i in range(limit)] == [401] * limit
    assert attempt("10.0.1.1", "mia", PASSWORD) == 429
    assert attempt("10.0.1.1", "bo", PASSWORD) == 303  # another account from a fresh address is not held up
    # one address guessing at many accounts is stopped too
    assert [attempt("10.0.2.1", f"x{i}", "nope nope") for i in range(limit)] == [401] * limit
    assert attempt("10.0.2.1", "bo", PASSWORD) == 429


def test_passwords_and_tokens_are_never_in_clear_in_the_database_the_logs_or_any_page(team, caplog):
    caplog.set_level(logging.DEBUG)
    client, tokens, url = team
    created = client.post("/api/v1/tokens", json={"label": "ci", "scope": "read"}, headers=bearer(tokens["bo"]))
    assert created.status_code == 201 and created.json()["token"].startswith("fbt_")
    listed = client.get("/api/v1/tokens", headers=bearer(tokens["bo"])).json()
    assert {t["label"] for t in listed} == {"laptop", "ci"} and all("token" not in t for t in listed)
    # a browser: a wrong password, the right one, a new password, a token shown once on the account page
    csrf = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"name": "root", "password": "a wrong password", "csrf_token": csrf})
    client.post("/login", data={"name": "root", "password": PASSWORD, "csrf_token": csrf})
    client.post("/account/password", data={"csrf_token": csrf, "old_password": PASSWORD,
                                           "new_password": "root's new passphrase"})
    shown = client.post("/account/tokens", data={"csrf_token": csrf, "label": "once"})
    browser_token = re.search(r'<code id="token-value">([^<]+)</code>', shown.text).group(1)
    client.post(f"/api/v1/runs/{10**6}/cancel", headers=bearer(tokens["mia"]))  # a 404, logged or not
    client.get("/api/v1/me", headers=bearer(browser_token[:-3] + "AAA"))  # a made-up token: 401
    client.get("/api/v1/me", headers=bearer(created.json()["token"]))
    secrets = (PASSWORD, "root's new passphrase", tokens["mia"], tokens["bo"], created.json()["token"], browser_token)
    pages = {p: client.get(p).text for p in ("/account", "/people", "/audit", "/runs", "/projects/alpha/members",
                                             "/api/v1/audit", "/api/v1/tokens", "/api/v1/people")}
    assert len(pages["/audit"]) > 1000 and "token.create" in pages["/audit"]
    for where, text in {**pages, "log": caplog.text}.items():
        assert not [s for s in secrets if s in text], where
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
    for secret in secrets:
        assert secret.encode() not in raw
    assert b"$argon2id$" in raw  # what is kept of a password


def test_the_audit_log_says_who_did_what_from_where(team):
    client, tokens, url = team
    run = client.post("/api/v1/runs", json=tiny_recipe(), headers=bearer(tokens["mia"])).json()["id"]
    assert client.post(f"/api/v1/runs/{run}/cancel", headers=bearer(tokens["mia"])).status_code == 200
    client.post(f"/api/v1/runs/{run}/retry", json={"from": "scratch"}, headers=bearer(tokens["mia"]))
    client.post(f"/api/v1/runs/{run}/cancel", headers=bearer(tokens["mia"]))
    client.patch(f"/api/v1/runs/{run}", json={"archived": True}, headers=bearer(tokens["mia"]))
    assert client.get("/api/v1/audit", headers=bearer(tokens["mia"])).status_code == 403  # site admins only
    (root,) = add(url, ("token", "root"))
    assert client.put("/api/v1/projects/alpha/members/bo", json={"role": "viewer"},
                      headers=bearer(root)).status_code == 200
    made = client.post("/api/v1/tokens", json={"label": "ci"}, headers=bearer(tokens["mia"])).json()
    assert client.delete(f"/api/v1/tokens/{made['id']}", headers=bearer(tokens["mia"])).status_code == 200
    rows = client.get("/api/v1/audit", headers=bearer(root)).json()["items"]
    seen = [(r["actor"], r["action"], r["target"]) for r in reversed(rows)]
    prefix = made["prefix"]
    assert [s for s in seen if s[0] == "mia"] == [
        ("mia", "launch", f"run {run}"), ("mia", "cancel", f"run {run}"), ("mia", "retry", f"run {run}"),
        ("mia", "cancel", f"run {run}"), ("mia", "archive", f"run {run}"),
        ("mia", "token.create", f"token {prefix}… (write) of mia"), ("mia", "token.revoke", f"token {prefix}… of mia")]
    assert ("root", "grant", "bo as viewer in alpha") in seen
    assert {r["address"] for r in rows} == {"testclient"} and {r["project"] for r in rows if r["actor"] == "mia"
                                                               and r["action"] != "token.create"} >= {"alpha"}
    page = client.get("/audit", headers=bearer(root))
    assert page.status_code == 200 and page.text.count('class="audit-row"') == len(rows)


def test_the_site_token_stays_a_site_admin_and_zero_config_ends_with_the_first_person(sqlite_url, tmp_path,
                                                                                       data_root):
    open_settings = Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)
    with TestClient(create_app(open_settings)) as client:
        assert client.get("/api/v1/me").json()["via"] == "local"  # nobody configured: the local admin, no login
        assert client.post("/api/v1/runs", json=tiny_recipe()).status_code == 201
        # "nobody has an account" is remembered per access generation: asked again, it is not read from the table
        stranger = {"Authorization": "Bearer " + "x" * 40}
        assert client.get("/api/v1/me", headers=stranger).json()["via"] == "local"
        add(sqlite_url, ("person", "root", "admin"))
        assert client.get("/api/v1/runs").status_code == 401  # the first person turns logins on
        assert client.get("/api/v1/runs", headers=stranger).status_code == 401
        assert client.get("/runs", follow_redirects=False).headers["location"].startswith("/login")
    with TestClient(create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root,
                                        api_token=TOKEN))) as client:
        me = client.get("/api/v1/me", headers=BEARER).json()
        assert me["via"] == "site-token" and me["site_admin"]
        assert client.get("/api/v1/runs", headers=BEARER).json()["total"] == 1


def test_existing_rows_move_to_the_project_default(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0009")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("INSERT INTO run (name, dataset, spec, status, cancel_requested, created_at, attempt, techniques)"
                     " VALUES ('old', 'digits', '{}', 'succeeded', 0, '2026-01-01 00:00:00', 1, '[]')")
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as s:
        run = s.exec(select(Run)).scalars().one()
        assert (run.name, run.project_name, run.launched_by) == ("old", "default", None)
    engine.dispose()
    down = make_engine(url, sqlite_foreign_keys=False)  # as upgrade() migrates: batch mode copies tables
    with down.connect() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
        conn.commit()
    down.dispose()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert "project_id" not in [c[1] for c in conn.execute("PRAGMA table_info(run)")]
        assert conn.execute("SELECT name FROM run").fetchall() == [("old",)]


def test_a_person_manages_their_tokens_in_the_browser(team):
    client, _, _ = team
    csrf = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"name": "mia", "password": PASSWORD, "csrf_token": csrf})
    page = client.post("/account/tokens", data={"csrf_token": csrf, "label": "notebook", "scope": "read"})
    assert page.status_code == 201
    token = re.search(r'<code id="token-value">([^<]+)</code>', page.text).group(1)
    assert client.get("/api/v1/me", headers=bearer(token)).json()["scope"] == "read"
    assert token not in client.get("/account").text  # shown once
    assert client.post("/api/v1/runs", json=tiny_recipe(), headers=bearer(token)).status_code == 403  # read scope
    token_id = [t for t in client.get("/api/v1/tokens", headers=bearer(token)).json() if t["label"] == "notebook"][0]
    client.post(f"/account/tokens/{token_id['id']}/revoke", data={"csrf_token": csrf})
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    # a password change ends other sessions of the person, not this one
    other = TestClient(client.app)
    other_csrf = CSRF.search(other.get("/login").text).group(1)
    other.post("/login", data={"name": "mia", "password": PASSWORD, "csrf_token": other_csrf})
    assert client.post("/account/password", data={"csrf_token": csrf, "old_password": PASSWORD,
                                                  "new_password": "another good one"}).status_code == 200
    assert client.get("/account", follow_redirects=False).status_code == 200
    assert other.get("/account", follow_redirects=False).status_code == 303
