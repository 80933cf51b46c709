"""Database fixtures: a SQLite file migrated once and copied per test; a Postgres database cloned per test.

Use from conftest.py (or a test module) with `from tests.store_fixtures import *`, then ask for:
  sqlite_url / sqlite_engine       a migrated SQLite file of this test's own
  postgres_url / postgres_engine   a migrated Postgres database of this test's own (skipped if Postgres is down,
                                   a failure when CI=true)
  postgres_empty_url               an empty Postgres database (nothing migrated)
  db_url / db_engine               parametrized over both backends: each test runs once per backend
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import make_url

from fitboard.app.store.db import make_engine, upgrade

__all__ = ["sqlite_template", "sqlite_url", "sqlite_engine", "postgres_server", "postgres_template",
           "postgres_url", "postgres_empty_url", "postgres_engine", "db_url", "db_engine"]

POSTGRES_URL = os.environ.get("FITBOARD_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _admin():
    """An autocommit psycopg2 connection to the admin database (CREATE/DROP DATABASE cannot run in a transaction)."""
    u = make_url(POSTGRES_URL)
    conn = psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                            dbname=u.database, connect_timeout=3)
    conn.autocommit = True
    return conn


def _admin_sql(sql: str) -> None:
    """Run one statement on the admin database."""
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _pg_url(database: str) -> str:
    """POSTGRES_URL pointed at another database."""
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


def _create_db(template: str | None = None) -> str:
    """Create a uniquely named database (a copy of template when given); returns its name."""
    name = f"fitboard_{'test' if template else 'tmpl'}_{uuid.uuid4().hex[:12]}"
    _admin_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _drop_db(name: str) -> None:
    """Drop a test database even if a leaked connection still holds it."""
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated to head once per test session."""
    path = tmp_path_factory.mktemp("sqlite-template") / "fitboard.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # fold the WAL into the main file so copying that one file is enough
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path) -> str:
    """A URL to this test's own copy of the migrated SQLite file."""
    path = tmp_path / "fitboard.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_engine(sqlite_url):
    """An engine on this test's migrated SQLite copy."""
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable Postgres; skips when none answers, fails instead when CI=true."""
    try:
        _admin().close()
    except psycopg2.OperationalError as exc:
        where = make_url(POSTGRES_URL).render_as_string()
        reason = f"PostgreSQL at {where} does not answer: {' '.join(str(exc).split())}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_template(postgres_server) -> str:
    """A Postgres database migrated to head once per session, cloned by each test."""
    name = _create_db()
    try:
        upgrade(_pg_url(name))  # disposes its engine: CREATE DATABASE ... TEMPLATE needs the template idle
        yield name
    finally:
        _drop_db(name)


@pytest.fixture
def postgres_url(postgres_template) -> str:
    """A URL to this test's own migrated Postgres database, dropped afterwards."""
    name = _create_db(template=postgres_template)
    yield _pg_url(name)
    _drop_db(name)


@pytest.fixture
def postgres_empty_url(postgres_server) -> str:
    """A URL to a new, empty Postgres database, dropped afterwards."""
    name = _create_db()
    yield _pg_url(name)
    _drop_db(name)


@pytest.fixture
def postgres_engine(postgres_url):
    """An engine on this test's migrated Postgres database."""
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:
    """A migrated database of this test's own, once per backend."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def db_engine(db_url):
    """An engine on db_url."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
