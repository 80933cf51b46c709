"""What every fitboard command shares: exit codes, settings with command-line overrides, the migrated engine."""
from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy import Engine

from fitboard.app.core.settings import Settings
from fitboard.app.store.db import default_database_url, make_engine, upgrade

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings with command-line overrides applied."""
    overrides = {"data_root": Path(args.data_root)} if getattr(args, "data_root", None) else {}
    return Settings(**overrides)


def store_engine(settings: Settings) -> Engine:
    """The database engine, schema brought up to date first."""
    url = default_database_url(settings)
    upgrade(url)
    return make_engine(url)


def add_data_root(parser: argparse.ArgumentParser) -> None:
    """The --data-root option several commands take."""
    parser.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
