"""The artifact store, both backends: a directory and an S3-compatible server (moto's, over real HTTP on loopback)."""
from __future__ import annotations

import uuid

import pytest

from fitboard.app.core.artifacts import ArtifactError, DirectoryStore, S3Store, open_store
from tests.s3server import S3Server
from tests.store_fixtures import *  # noqa: F401,F403  postgres_empty_url, ...


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(params=["directory", "s3"])
def store(request, tmp_path, monkeypatch):
    """A fresh, empty store of each kind."""
    if request.param == "directory":
        return DirectoryStore(tmp_path / "artifacts")
    server = request.getfixturevalue("s3")
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    return S3Store(server.bucket(f"b-{uuid.uuid4().hex[:12]}"), server.endpoint)


def test_put_fetch_open_and_delete_by_run_id_and_kind(store, tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"\x00weights" * 100_000)  # 800 kB: several chunks
    assert store.put(7, "model", model) == 800_000 and model.exists()  # a copy unless moved
    chunks, size = store.open(7, "model")
    assert size == 800_000 and b"".join(chunks) == model.read_bytes()
    fetched = store.fetch(7, "model", tmp_path / "elsewhere" / "m.pkl")
    assert fetched.read_bytes() == model.read_bytes()
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("image_id,actual\n1.jpg,a\n")
    store.put(7, "predictions", csv_file, move=True)
    assert not csv_file.exists() and store.read_text(7, "predictions") == "image_id,actual\n1.jpg,a\n"
    assert store.open(8, "model") is None and store.fetch(8, "model", tmp_path / "x") is None
    assert store.read_text(7, "checkpoint") is None
    store.delete_run(7)
    assert store.open(7, "model") is None and store.open(7, "predictions") is None
    assert store.probe().endswith("wrote, read back and deleted a probe")


def test_a_put_replaces_atomically_and_leaves_no_temporary_file(tmp_path):
    store = DirectoryStore(tmp_path / "artifacts")
    for n in range(3):
        f = tmp_path / f"c{n}"
        f.write_bytes(bytes([n]) * 1000)
        store.put(1, "checkpoint", f, move=True)
    assert [p.name for p in (tmp_path / "artifacts" / "1").iterdir()] == ["checkpoint.pth"]
    assert store.local_path(1, "checkpoint").read_bytes() == bytes([2]) * 1000


def test_unknown_kinds_and_roots_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown artifact kind 'weights'"):
        DirectoryStore(tmp_path).put(1, "weights", tmp_path)
    with pytest.raises(ValueError, match="expected a directory or s3://bucket/prefix"):
        open_store("ftp://host/x")
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3://")


def test_an_unusable_directory_fails_the_probe_with_its_path(tmp_path):
    root = tmp_path / "not-a-dir"
    root.write_text("a file where the mount should be")  # fails for root too, unlike permissions
    with pytest.raises(ArtifactError, match=str(root)):
        DirectoryStore(root).probe()


def test_an_unreachable_bucket_fails_the_probe_and_reads_with_artifact_errors(monkeypatch, s3):
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    store = S3Store("s3://no-such-bucket/x", s3.endpoint)
    with pytest.raises(ArtifactError, match="no-such-bucket"):
        store.probe()
    dead = S3Store("s3://b/x", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ArtifactError, match="could not read the model of run 1"):
        dead.open(1, "model")


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request, tmp_path):
    """An empty database of each backend (nothing migrated)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("postgres_empty_url")


def test_migrating_from_stored_paths_keeps_every_run_and_its_files(empty_db_url, tmp_path, data_root):
    """Runs stored before the artifact store (absolute paths under $FITBOARD_HOME/artifacts) keep their downloads."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from fitboard.app.core.settings import Settings
    from fitboard.app.store.db import make_engine, upgrade
    from fitboard.app.web.app import create_app

    upgrade(empty_db_url, "0003")
    home = tmp_path / "home"
    model = home / "artifacts" / "1" / "model.pkl"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"an old model")
    engine = make_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO run (id, name, dataset, status, spec, created_at, queue, republish_count, "
                          "attempt, cancel_requested, techniques, model_path) VALUES (1, 'old', 'digits', "
                          "'succeeded', '{}', CURRENT_TIMESTAMP, 'fitboard', 0, 1, false, '[]', :p)"),
                     {"p": str(model)})
        conn.execute(text("INSERT INTO artifact (run_id, kind, path) VALUES (1, 'model', :p)"), {"p": str(model)})
        conn.execute(text("INSERT INTO epoch (run_id, stage, epoch, train_loss, metrics, created_at) "
                          "VALUES (1, 0, 0, 0.5, '{}', CURRENT_TIMESTAMP)"))
    engine.dispose()
    upgrade(empty_db_url)
    app = create_app(Settings(home=home, database_url=empty_db_url, data_root=data_root))
    with TestClient(app) as client:
        assert client.get("/api/v1/runs/1").json()["name"] == "old"
        assert client.get("/api/v1/runs/1/model").content == b"an old model"
        assert len(client.get("/api/v1/runs/1/epochs").json()) == 1  # no cascade took the run's rows
