"""A team's fitboard for the access tests: people with roles in two projects, tokens of every kind, and in project
`alpha` one of each thing a route can name (runs, a sweep, a search, a tracked run, a dataset, a prediction)."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from fitboard.app.core.artifacts import open_store
from fitboard.app.core.settings import Settings
from fitboard.app.services import people
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Artifact, utcnow
from fitboard.app.store.people_models import ApiToken
from fitboard.app.store.predictions import create_prediction
from fitboard.app.web.app import create_app
from tests.helpers import finish_by_hand, tiny_recipe

PASSWORD = "correct horse battery"
# who -> (site admin, {project: role})
PEOPLE = {"root": (True, {}), "vera": (False, {"alpha": "viewer"}), "mia": (False, {"alpha": "member"}),
          "ada": (False, {"alpha": "admin"}), "bo": (False, {"beta": "member"})}
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@dataclass
class World:
    """The app, a logged-in client per person, bearer tokens by kind, and the ids of alpha's things."""

    app: object
    settings: Settings
    clients: dict = field(default_factory=dict)  # person -> (TestClient with a session, its CSRF token)
    tokens: dict = field(default_factory=dict)  # kind -> token
    ids: dict = field(default_factory=dict)


def log_in(app, name: str) -> tuple[TestClient, str]:
    """A client logged in as name, and its session's CSRF token."""
    client = TestClient(app, follow_redirects=False)
    client.__enter__()
    csrf = CSRF.search(client.get("/login").text).group(1)
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf, "next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return client, csrf


def _people(engine) -> dict:
    """Accounts, projects, roles and tokens: read-scope, worker-scope, revoked and expired ones of mia."""
    with session_scope(engine) as s:
        for project in ("alpha", "beta"):
            people.add_project(s, project)
        for name, (admin, roles) in PEOPLE.items():
            people.add_person(s, name, PASSWORD, site_admin=admin)
            for project, role in roles.items():
                people.grant(s, project, name, role)
        mia = people.person(s, "mia")
        tokens = {kind: people.create_token(s, mia, kind, scope)[0]
                  for kind, scope in (("read", "read"), ("worker", "worker"), ("write", "write"),
                                      ("revoked", "write"), ("expired", "write"))}
        people.revoke_token(s, token=tokens["revoked"])
    with session_scope(engine) as s:  # an expiry in the past: as if created long ago
        row = s.exec(select(ApiToken).where(ApiToken.label == "expired")).scalars().one()
        row.expires_at = utcnow() - timedelta(minutes=1)
        s.add(row)
    return tokens


def _things(client: TestClient, csrf: str, engine, home) -> dict:
    """Alpha's things, made through the API as root (so they land in alpha as a person would make them)."""
    h, q = {"X-CSRF-Token": csrf}, "?project=alpha"
    ids = {"run": client.post("/api/v1/runs" + q, json=tiny_recipe(name="alpha-1"), headers=h).json()["id"],
           "run2": client.post("/api/v1/runs" + q, json=tiny_recipe(name="alpha-2"), headers=h).json()["id"]}
    finish_by_hand(engine, ids["run"], 0.8)
    finish_by_hand(engine, ids["run2"], 0.7)
    model = home / "model.pkl"
    model.write_bytes(b"not a real model")
    with session_scope(engine) as s:
        s.add(Artifact(run_id=ids["run"], kind="model", size=open_store(str(home / "artifacts")).put(
            ids["run"], "model", model, move=True)))
    ids["live"] = client.post("/api/v1/runs" + q, json=tiny_recipe(name="alpha-live"), headers=h).json()["id"]
    sweep = client.post("/api/v1/sweeps" + q, json={"base": tiny_recipe(), "vary": {"stages[0].mixup": [0.2]},
                                                    "seeds": [0, 1, 2]}, headers=h)
    assert sweep.status_code == 201, sweep.text
    ids["sweep"] = sweep.json()["id"]
    search = client.post("/api/v1/searches" + q, headers=h, json={
        "base": tiny_recipe(), "space": {"stages[0].bs": {"int": [16, 32]}}, "options": {"max_trials": 2}})
    assert search.status_code == 201, search.text
    ids["search"] = search.json()["id"]
    tracked = client.post("/api/v1/tracked" + q, json={"name": "notebook"}, headers=h)
    assert tracked.status_code == 201, tracked.text
    ids["tracked"] = tracked.json()["id"]
    dataset = client.post("/api/v1/datasets" + q, headers=h, json={"name": "alpha-data", "spec": {
        "layout": "csv", "path": "digits", "images": "train_images", "label_map": "label_num_to_disease_map.json"}})
    assert dataset.status_code == 201, dataset.text
    with session_scope(engine) as s:  # a prediction lands in its run's project
        ids["prediction"] = create_prediction(s, ids["run"], ["a.png"], ["AAAA"]).id
    return ids


def build(tmp_path, sqlite_template, data_root) -> World:
    """The world on a fresh copy of the migrated database."""
    shutil.copyfile(sqlite_template, tmp_path / "fitboard.db")
    # auth_failures_per_minute: the matrix sends hundreds of dead tokens on purpose. stream_lifetime: each caller's
    # TestClient runs the app on an event loop of its own, and a stream's wake-up comes from another's, so a stream
    # (of a finished run: 0.1 s on a real server) waited out PING_SECONDS (15 s) for each of five callers.
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'fitboard.db'}", data_root=data_root,
                        auth_failures_per_minute=100_000, stream_lifetime=1.0)
    app = create_app(settings)
    world = World(app, settings)
    world.tokens = _people(app.state.engine)
    world.clients = {name: log_in(app, name) for name in PEOPLE}
    world.ids = _things(*world.clients["root"], app.state.engine, tmp_path)
    return world
