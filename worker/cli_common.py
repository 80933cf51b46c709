"""What every fitboard command shares: exit codes and settings with command-line overrides."""
from __future__ import annotations

from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
DEFAULT_QUEUE = "fitboard"  # the same name as app.queue.DEFAULT_QUEUE, without importing celery for --help


def settings_from(args):
    """Settings with command-line overrides applied."""
    from app.settings import Settings

    overrides = {"data_root": Path(args.data_root)} if getattr(args, "data_root", None) else {}
    return Settings(**overrides)


def store_engine(settings):
    """The database engine, schema brought up to date first."""
    from app.db import default_database_url, make_engine, upgrade

    url = default_database_url(settings)
    upgrade(url)
    return make_engine(url)
