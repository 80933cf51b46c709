"""Alembic environment: fitboard's tables, batch mode on SQLite, the URL from app.store.db.upgrade() or settings."""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import make_url
from sqlmodel import SQLModel

from app.store.db import default_database_url, make_engine
from app.store.models import UTCDateTime  # importing app.store.models registers the tables on SQLModel.metadata

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


def _configure(dialect: str, **kwargs) -> None:
    """Shared options: compare types, and batch mode so SQLite can alter tables by copying them."""
    context.configure(target_metadata=target_metadata, compare_type=True, render_item=_render_item,
                      render_as_batch=dialect == "sqlite", **kwargs)


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
        _configure(connection.dialect.name, connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
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
