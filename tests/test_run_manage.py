"""Tidying runs: delete, rename, notes, tags and archive through the API, the pages and the CLI, on a real database."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from fitboard.app.store.db import session_scope
from fitboard.app.store.models import EpochRow, LRFind, RunAttempt
from fitboard.app.store.sweeps import sweep_report
from tests.api_fixtures import *  # noqa: F401,F403  settings, client
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_api import stored_run


def engine(client):
    return client.app.state.engine


def csrf(client) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/runs").text)[1]


def count(client, model, run_id: int) -> int:
    with session_scope(engine(client)) as s:
        return len(s.exec(select(model).where(model.run_id == run_id)).all())


def test_delete_removes_rows_and_files(client, settings):
    run_id = stored_run(engine(client), "succeeded", epochs=2)
    files = Path(settings.artifact_location) / str(run_id)  # the default artifact store, a directory
    files.mkdir(parents=True)
    (files / "model.pkl").write_bytes(b"x")
    assert count(client, EpochRow, run_id) == 2 and count(client, LRFind, run_id) == 1
    r = client.delete(f"/api/v1/runs/{run_id}")
    assert r.status_code == 200 and r.json() == {"id": run_id, "deleted": True}
    assert client.get(f"/api/v1/runs/{run_id}").status_code == 404
    assert client.get(f"/api/v1/runs/{run_id}/epochs").status_code == 404
    assert count(client, EpochRow, run_id) == 0 and count(client, LRFind, run_id) == 0
    assert count(client, RunAttempt, run_id) == 0
    assert not files.exists()
    assert client.delete(f"/api/v1/runs/{run_id}").status_code == 404
    # SQLite must not hand the deleted (newest) id to the next run: old links would open another run.
    assert client.post("/api/v1/runs", json=tiny_recipe()).json()["id"] > run_id


@pytest.mark.parametrize("status", ["queued", "running"])
def test_delete_live_run_is_409(client, status):
    run_id = stored_run(engine(client), status)
    r = client.delete(f"/api/v1/runs/{run_id}")
    assert r.status_code == 409 and "cancel it first" in r.json()["detail"]
    assert client.get(f"/api/v1/runs/{run_id}").status_code == 200


def test_patch_name_notes_tags_archived(client):
    run_id = stored_run(engine(client), "succeeded", epochs=1)
    r = client.patch(f"/api/v1/runs/{run_id}", json={"name": " renamed ", "notes": "lr too high?\nretry with 1e-3",
                                                    "tags": ["keep", "lr:1e-3", "keep"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "renamed" and body["notes"] == "lr too high?\nretry with 1e-3"
    assert body["tags"] == ["keep", "lr:1e-3"] and body["archived"] is False
    assert client.patch(f"/api/v1/runs/{run_id}", json={"archived": True}).json()["archived"] is True
    after = client.get(f"/api/v1/runs/{run_id}").json()  # fields left out stay
    assert after["name"] == "renamed" and after["tags"] == ["keep", "lr:1e-3"] and after["archived"] is True


@pytest.mark.parametrize("body, field", [
    ({"name": ""}, "name"), ({"name": "   "}, "name"), ({"name": "x" * 201}, "name"), ({"name": None}, "name"),
    ({"name": "a\nb"}, "name"), ({"notes": "x" * 10_001}, "notes"), ({"notes": "nul\x00"}, "notes"),
    ({"tags": ["has space"]}, "tags[0]"), ({"tags": ["a,b"]}, "tags[0]"), ({"tags": ["t"] * 17}, "tags"),
    ({"tags": ["x" * 41]}, "tags[0]"), ({"archived": "maybe"}, "archived"), ({"colour": "red"}, "colour"),
])
def test_patch_refuses_bad_fields_naming_them(client, body, field):
    run_id = stored_run(engine(client), "succeeded")
    r = client.patch(f"/api/v1/runs/{run_id}", json=body)
    assert r.status_code == 422, r.text
    assert field in [p["loc"] for p in r.json()["detail"]]


def test_patch_unknown_run_is_404(client):
    assert client.patch("/api/v1/runs/999", json={"name": "x"}).status_code == 404


def test_list_filters_by_tag_and_hides_archived(client):
    a, b, c = (stored_run(engine(client), "succeeded", name=n) for n in ("a", "b", "c"))
    client.patch(f"/api/v1/runs/{a}", json={"tags": ["keep", "x_y"]})
    client.patch(f"/api/v1/runs/{b}", json={"tags": ["xky"]})
    client.patch(f"/api/v1/runs/{c}", json={"tags": ["keep"], "archived": True})
    ids = lambda q: [r["id"] for r in client.get(f"/api/v1/runs?{q}").json()["items"]]  # noqa: E731
    assert ids("") == [b, a]  # archived hidden by default
    assert ids("archived=show") == [c, b, a] and ids("archived=only") == [c]
    assert ids("tag=keep") == [a] and ids("tag=keep&archived=show") == [c, a]
    assert ids("tag=x_y") == [a]  # "_" is not a wildcard: xky does not match
    r = client.get("/api/v1/runs?tag=bad%20tag")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "tag"


def test_deleted_sweep_run_leaves_the_statistics(client):
    body = {"base": tiny_recipe(), "vary": {"label_smoothing": [0.1]}, "seeds": [0, 1, 2]}
    sweep = client.post("/api/v1/sweeps", json=body).json()
    run_ids = [r["id"] for r in sweep["queued"]]
    client.post(f"/api/v1/runs/{run_ids[0]}/cancel")
    assert client.delete(f"/api/v1/runs/{run_ids[0]}").status_code == 200
    with session_scope(engine(client)) as s:
        report = sweep_report(s, sweep["id"])
    assert report["runs_total"] == len(run_ids) - 1
    assert run_ids[0] not in [r["id"] for v in report["variants"] for r in v["runs"]]


def test_pages_edit_archive_delete(client):
    run_id = stored_run(engine(client), "succeeded", name="page-run")
    token = csrf(client)
    r = client.post(f"/runs/{run_id}/edit", data={"csrf_token": token, "name": "page run 2", "tags": "keep, ab",
                                                   "notes": "<b>plain</b> text"})
    assert r.status_code == 200 and "Saved." in r.text
    assert "&lt;b&gt;plain&lt;/b&gt; text" in r.text and 'href="/runs?tag=keep"' in r.text
    r = client.post(f"/runs/{run_id}/edit", data={"csrf_token": token, "name": "ok", "tags": "a b!"})
    assert r.status_code == 422 and "tags[1]" in r.text
    client.post(f"/runs/{run_id}/archive", data={"csrf_token": token, "archived": "1"})
    assert "page run 2" not in client.get("/runs").text
    assert "page run 2" in client.get("/runs?archived=show").text
    r = client.post(f"/runs/{run_id}/delete", data={"csrf_token": token})
    assert r.status_code == 200 and f"Run {run_id} deleted." in r.text
    assert client.get(f"/runs/{run_id}").status_code == 404


def test_list_bulk_archive_and_delete(client):
    done = [stored_run(engine(client), "succeeded", name=f"bulk-{i}") for i in range(3)]
    live = stored_run(engine(client), "running", name="bulk-live")
    token = csrf(client)
    r = client.post("/runs/bulk", data={"csrf_token": token, "action": "archive", "ids": [str(done[0])],
                                        "back": "/runs?name=bulk"})
    assert r.status_code == 200 and f"Archived run {done[0]}." in r.text and "bulk-0" not in r.text
    r = client.post("/runs/bulk", data={"csrf_token": token, "action": "delete",
                                        "ids": [str(done[1]), str(live), "x", "99999999999999999999"]})
    assert f"Deleted run {done[1]}." in r.text and f"run {live} is running: cancel it first" in r.text
    assert client.get(f"/api/v1/runs/{live}").status_code == 200
    assert client.post("/runs/bulk", data={"action": "delete", "ids": [str(done[2])]}).status_code == 403


def test_cli_edit_runs_delete(client, settings):
    run_id = stored_run(engine(client), "succeeded", name="a-very-long-run-name-" + "x" * 40)
    env = {"FITBOARD_HOME": str(settings.home), "FITBOARD_DATABASE_URL": settings.database_url}
    cli = lambda *a: subprocess.run([sys.executable, "-m", "fitboard.worker.cli", *a], capture_output=True,  # noqa: E731
                                    text=True, env={**os.environ, **env}, timeout=120)
    p = cli("edit", str(run_id), "--tag", "keep", "--tag", "cli", "--notes", "from the shell")
    assert p.returncode == 0, p.stderr
    assert "keep,cli" in p.stdout
    assert cli("edit", str(run_id), "--tag", "bad tag").returncode == 2
    wide = cli("runs", "--wide", "--tag", "keep").stdout
    assert "a-very-long-run-name-" + "x" * 40 in wide and "keep,cli" in wide
    assert "…" in cli("runs").stdout
    p = cli("delete", str(run_id))
    assert p.returncode == 0 and f"run {run_id} deleted" in p.stdout
    assert cli("delete", str(run_id)).returncode != 0


def test_store_edit_delete_and_tag_filter_on_both_backends(db_engine):
    from fitboard.app.core.errors import RunLive
    from fitboard.app.store.runs import delete_run, list_runs, update_run

    done = stored_run(db_engine, "succeeded", epochs=2, name="done")
    live = stored_run(db_engine, "running", name="live")
    with session_scope(db_engine) as s:
        update_run(s, done, {"tags": ["a_b", "keep"], "notes": "über – ok", "archived": True})
        update_run(s, live, {"tags": ["axb"]})
    with session_scope(db_engine) as s:
        assert [r.id for r in list_runs(s, tag="a_b")[0]] == [done]  # "_" matches itself only
        assert [r.id for r in list_runs(s, archived=False)[0]] == [live]
        assert s.get(type(list_runs(s)[0][0]), done).notes == "über – ok"
        with pytest.raises(RunLive):
            delete_run(s, live)
    with session_scope(db_engine) as s:
        delete_run(s, done)
    with session_scope(db_engine) as s:
        assert [r.id for r in list_runs(s)[0]] == [live]
        assert s.exec(select(EpochRow).where(EpochRow.run_id == done)).first() is None


def test_cli_with_only_fitboard_url_asks_that_server_and_opens_no_database(settings, tmp_path):
    """`fitboard runs`, `show`, `cancel`, `retry`, `edit` and `delete` with FITBOARD_URL set (no database URL) ask that
    server: its runs, not an empty local database created in FITBOARD_HOME."""
    from tests.live import live_app

    home = tmp_path / "laptop-home"
    env = {k: v for k, v in os.environ.items() if k != "FITBOARD_DATABASE_URL"}
    with live_app(settings) as (base, app):
        done = stored_run(app.state.engine, "succeeded", epochs=2, name="on-the-server")
        queued = stored_run(app.state.engine, "queued", name="waiting-there")
        env.update(FITBOARD_URL=base, FITBOARD_HOME=str(home))
        cli = lambda *a: subprocess.run([sys.executable, "-m", "fitboard.worker.cli", *a], capture_output=True,  # noqa: E731
                                        text=True, env=env, timeout=120)
        listed = cli("runs")
        assert listed.returncode == 0, listed.stderr
        assert "on-the-server" in listed.stdout and "waiting-there" in listed.stdout
        assert listed.stdout.splitlines()[-1] == "2 of 2 runs"
        shown = cli("show", str(done)).stdout
        assert f"run {done} 'on-the-server': succeeded" in shown and "stage 1 · epoch 2: train_loss" in shown
        assert "worker None" not in shown  # a run no worker holds says nothing of one
        assert "validation: loss 0.8000  accuracy 0.7000" in shown
        assert cli("cancel", str(queued)).stdout.strip() == f"run {queued}: cancelled"
        retried = cli("retry", str(queued))
        assert retried.returncode == 0 and f"run {queued} queued again from the start" in retried.stdout
        assert cli("runs", "--status", "queued").stdout.splitlines()[-1] == "1 of 1 runs"
        edited = cli("edit", str(done), "--tag", "keep", "--name", "renamed-there")
        assert edited.stdout.strip() == f"run {done} 'renamed-there': tags keep", edited.stderr
        assert cli("edit", str(done), "--tag", "bad tag").returncode == 2  # the server's 422, naming the field
        assert cli("delete", str(queued)).returncode == 1  # queued again: the server's 409
        assert cli("delete", str(done)).stdout.strip() == f"run {done} deleted"
        missing = cli("show", "999")
        assert missing.returncode == 1 and "run 999" in missing.stderr and "Traceback" not in missing.stderr
    assert not home.exists() or not any(home.rglob("*.db"))  # no local database was opened or created
    gone = cli("runs")  # the server has stopped: said in a line, not a traceback
    assert gone.returncode == 1 and gone.stderr.startswith(f"cannot reach {base}")
