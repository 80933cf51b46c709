"""Alembic environment: fitboard's tables, batch mode on SQLite, the URL from app.store.db.upgrade() or settings."""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import inspect, make_url, text
from sqlmodel import SQLModel

from fitboard.app.store.db import VERSION_TABLE, default_database_url, make_engine
from fitboard.app.store.models import (
    UTCDateTime,  # importing fitboard.app.store.models registers the tables on SQLModel.metadata
)
from fitboard.app.store.name_search import TRGM_INDEX

config = context.config
target_metadata = SQLModel.metadata

# Only the alembic CLI configures logging; app.store.db.upgrade() must not reset the host application's loggers.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)


def _url() -> str:
    """The URL upgrade() set, else FITBOARD_DATABASE_URL, else the SQLite file in FITBOARD_HOME."""
    return config.get_main_option("sqlalchemy.url") or default_database_url()


def _render_item(type_, obj, autogen_context):
    """Render UTCDateTime as plain sa.DateTime() so revisions never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def _include_name(name, type_, parent_names) -> bool:
    """Only fitboard's own tables: Optuna keeps its study tables (and its own alembic_version) in the same database,
    and autogenerate must never propose dropping them."""
    if type_ == "index":  # PostgreSQL's trigram index on run.name has no model (app.store.name_search makes it)
        return name != TRGM_INDEX
    return type_ != "table" or name in target_metadata.tables


def _move_version_table(connection) -> None:
    """Databases made before searches kept fitboard's revision in alembic_version, the table Optuna's storage uses
    for its own schema: move it to VERSION_TABLE (once, before Alembic reads it)."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or "alembic_version" not in tables:
        return
    rows = [r[0] for r in connection.execute(text("SELECT version_num FROM alembic_version"))]
    if not rows or not all(r[:4].isdigit() for r in rows):  # Optuna's revisions look like v3.2.0.a
        return
    connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
                            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"))
    for r in rows:
        connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": r})
    connection.execute(text("DROP TABLE alembic_version"))


def _configure(dialect: str, **kwargs) -> None:
    """Shared options: compare types, batch mode so SQLite can alter tables by copying them, fitboard's tables only,
    and fitboard's own version table (Optuna's storage owns alembic_version)."""
    context.configure(target_metadata=target_metadata, compare_type=True, render_item=_render_item,
                      render_as_batch=dialect == "sqlite", include_name=_include_name,
                      version_table=VERSION_TABLE, **kwargs)


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (alembic upgrade --sql) without a database."""
    url = _url()
    _configure(make_url(url).get_backend_name(), url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the connection upgrade() passed in, or one of our own engines (SQLite pragmas included)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _move_version_table(connection)
        _configure(connection.dialect.name, connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _move_version_table(connection)
            _configure(connection.dialect.name, connection=connection)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
