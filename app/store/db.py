"""Engines, sessions and migrations for SQLite (one host) and Postgres (a fleet)."""
from __future__ import annotations

import fcntl
import json
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlmodel import Session

from fitboard.app.core.jsonsafe import json_safe
from fitboard.app.core.resources import migrations_dir
from fitboard.app.core.settings import Settings, get_settings
from fitboard.app.store.name_search import ensure_sqlite_triggers
from fitboard.app.store.sqlite_stats import write_sqlite_stats

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any fixed 64-bit key works; every fitboard process must agree on it.
PG_MIGRATE_LOCK = zlib.crc32(b"fitboard.migrate")
MIGRATE_CACHE_KIB = 256 * 1024
# SQLite's sorter (index builds, run_gram's fill) merges on helper threads: 2 cut run_gram's 26 s to 22 s
MIGRATE_SORT_THREADS = min(4, os.cpu_count() or 1)
_READS = ("SELECT", "PRAGMA", "EXPLAIN")
NOTIFY_CHANNEL = "fitboard_changes"  # PostgreSQL: every commit that wrote notifies it (app.web.changes listens)
NOTIFY = f"NOTIFY {NOTIFY_CHANNEL}"
_WROTE = "fitboard_wrote"  # conn.info: this transaction wrote, so its commit notifies
# fitboard's Alembic revision lives here; alembic_version belongs to Optuna's storage (searches share the database).
VERSION_TABLE = "fitboard_alembic_version"


def default_database_url(settings: Settings | None = None) -> str:
    """The configured database URL, else a SQLite file in FITBOARD_HOME."""
    settings = settings or get_settings()
    return settings.database_url or f"sqlite:///{Path(settings.home) / 'fitboard.db'}"


def json_dumps(obj) -> str:
    """JSON for the database: strict, with non-finite floats stored as null."""
    return json.dumps(json_safe(obj), allow_nan=False)


def _sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory databases."""
    database = make_url(url).database
    return None if database in (None, "", ":memory:") or database.startswith("file:") else Path(database)


def sqlite_events(engine: Engine, foreign_keys: bool = True) -> None:
    """Pragmas on every connection, and write transactions that queue on the lock instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Take transaction control from the sqlite3 module; _begin_for_writes decides when to BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")  # first, so the pragmas below wait too
        cur.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cur.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync only at checkpoints
        cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_for_writes(conn, cursor, statement, params, context, executemany):
        # Reads outside a transaction run in autocommit (each sees the latest commit, like Postgres' READ
        # COMMITTED). The first write opens BEGIN IMMEDIATE, which waits up to busy_timeout for the write
        # lock. Unlike the sqlite3 module's implicit BEGIN (before DML only), DDL and SAVEPOINT are covered
        # too, so a migration that stops halfway leaves no half-built schema.
        dbapi_conn = conn.connection.dbapi_connection
        if not dbapi_conn.in_transaction and not statement.lstrip().upper().startswith(_READS):
            cursor.execute("BEGIN IMMEDIATE")


def _notify_on_commit(engine: Engine) -> None:
    """NOTIFY fitboard_changes in every transaction that wrote (delivered only if it commits): the web's event
    streams wake on it instead of polling. Every fitboard process writes through make_engine, so all writers do."""

    @event.listens_for(engine, "before_cursor_execute")
    def _note_write(conn, cursor, statement, params, context, executemany):
        if not statement.lstrip().upper().startswith(_READS):
            conn.info[_WROTE] = True

    @event.listens_for(engine, "commit")
    def _notify(conn):
        if conn.info.pop(_WROTE, False):
            with conn.connection.dbapi_connection.cursor() as cur:
                cur.execute(NOTIFY)

    @event.listens_for(engine, "rollback")
    def _forget(conn):
        conn.info.pop(_WROTE, None)


def notify_sent(conn) -> None:
    """A statement of this transaction sent its NOTIFY itself (with its write, in one round trip): the commit sends
    none."""
    conn.info.pop(_WROTE, None)


def driver_url(url: str) -> str:
    """A bare postgresql:// means psycopg2 here, the driver fitboard ships (SQLAlchemy 2.1 would pick psycopg 3)."""
    return ("postgresql+psycopg2://" + url.split("://", 1)[1] if url.startswith(("postgresql://", "postgres://"))
            else url)


def web_pool(url: str, max_requests: int) -> dict:
    """Pool settings for the web process: a connection for every admitted request (app.web.admission) plus the event
    streams' poller, the health check and the reconciler, so a request never waits for one; a short timeout as a
    last guard (its error is answered 503). SQLite gets the same bounded pool: its connections are cheap, reads run
    side by side under WAL and writes queue on the file lock (busy_timeout), not on the pool."""
    if make_url(driver_url(url)).get_backend_name() == "sqlite" and _sqlite_path(url) is None:
        return {}  # an in-memory database lives in one connection: SQLAlchemy's own pool for it
    return {"pool_size": max_requests + 4, "max_overflow": 4, "pool_timeout": 10}


def make_engine(url: str, sqlite_foreign_keys: bool = True, **kwargs) -> Engine:
    """An engine for url; SQLite gets WAL, busy_timeout, foreign keys (unless sqlite_foreign_keys is False: the
    migration runner) and lock-queuing write transactions."""
    url = driver_url(url)
    kwargs.setdefault("json_serializer", json_dumps)
    if make_url(url).get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)  # workers hold engines for days; servers restart
        if make_url(url).get_backend_name() == "postgresql":
            # No JIT: fitboard's queries read a few index pages each, and compiling a plan that PostgreSQL prices
            # as large (a name search sorting 100,000 matches) took 15-95 ms, more than running it.
            connect_args = kwargs.setdefault("connect_args", {})
            # No parallel workers either: starting them took about 9 ms, and a list reads a few thousand rows.
            connect_args["options"] = (connect_args.get("options", "")
                                       + " -c jit=off -c max_parallel_workers_per_gather=0").strip()
        engine = create_engine(url, **kwargs)
        if engine.dialect.name == "postgresql":
            _notify_on_commit(engine)
        return engine
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    sqlite_events(engine, sqlite_foreign_keys)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises."""
    # expire_on_commit=False: callers use the returned rows (run.id to enqueue) after the commit.
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str):
    """An Alembic Config for url, built in code: the migrations ship inside the package, no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolates %
    cfg.attributes["configure_logger"] = False  # the CLI configures logging; an app keeps its own
    return cfg


@contextmanager
def _migrate_lock(url: str, engine: Engine) -> Iterator[None]:
    """Serialise migrations across processes: a file lock for SQLite, an advisory lock for Postgres."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATE_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATE_LOCK})
        return
    path = _sqlite_path(url) if engine.dialect.name == "sqlite" else None
    if path is None:
        yield
        return
    with open(f"{path}.migrate.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, even if this process dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _revision(conn) -> str | None:
    """The database's fitboard revision (None before the first migration)."""
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database at url (default: the configured one) to revision; safe to call from many processes."""
    url = driver_url(url or default_database_url())
    # Foreign keys off while migrating SQLite: batch mode rebuilds a table by copying it and dropping the old one,
    # and with them on, dropping `run` would cascade to every run's epoch rows, curves, attempts and files.
    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with _migrate_lock(url, engine):
            cfg = alembic_config(url)
            with engine.connect() as conn:
                if engine.dialect.name == "sqlite":  # index builds sort in the page cache: 256 MiB, not 2 MiB
                    conn.exec_driver_sql(f"PRAGMA cache_size = -{MIGRATE_CACHE_KIB}")
                    conn.exec_driver_sql(f"PRAGMA threads = {MIGRATE_SORT_THREADS}")
                cfg.attributes["connection"] = conn
                before = _revision(conn)
                command.upgrade(cfg, revision)
                if engine.dialect.name == "sqlite":
                    ensure_sqlite_triggers(conn)  # a later revision's table copy drops the name index's triggers
                    write_sqlite_stats(conn)  # and the planner's statistics of the copied table
                    # Checked when a revision ran (seconds at a million runs), not at every process start.
                    migrated = _revision(conn) != before
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() if migrated else []
                    if broken:  # never commit a schema whose rows point nowhere
                        raise RuntimeError(f"migration left rows that reference missing rows: {broken[:5]}")
                conn.commit()
    finally:
        engine.dispose()
